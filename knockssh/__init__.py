"""knockssh: knock a rotating knockd sequence, then connect (ProxyCommand and Python API).

``knockssh.connect(host, port)`` returns a connected socket, usable as paramiko's
``sock=``. Imports are lazy: the ProxyCommand starts on every ssh connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["KnocksshError", "connect"]


def __getattr__(name: str) -> Any:
    if name == "connect":
        from .client import connect

        return connect
    if name == "KnocksshError":
        from .errors import KnocksshError

        return KnocksshError
    raise AttributeError(name)
