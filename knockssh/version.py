"""knockssh's version: the one constant is in ``rotator.version`` (the server half
imports nothing of the client). A module of one line: ``--version`` costs the
ProxyCommand path nothing."""

from rotator.version import VERSION

__all__ = ["VERSION"]
