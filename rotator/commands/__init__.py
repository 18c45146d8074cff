"""One module per command of ``knockssh-rotator``: each has its parser and its
``main`` or ``run``; ``rotator.cli`` picks one and catches the domain error once."""
