"""The server half of knockssh, and the scheme both halves share.

Pure (no I/O): ``scheme`` (the knockd_rotator contract, one file that can be copied
alone), ``knockdconf`` (knockd.conf text in, text out), ``rotation``, ``doctor``,
``server_setup``, ``text``. Side effects, each in a module named for what it
touches: ``files``, ``conffile``, ``proc``, ``knockd``, ``systemd``. One module per
command in ``commands/``; ``cli`` is the entry. Nothing here imports ``knockssh``.
"""
