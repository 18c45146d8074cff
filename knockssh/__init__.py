"""knockssh: knock a rotating knockd sequence, then connect (ProxyCommand and Python API).

``knockssh.connect(host, port)`` returns a connected socket, usable as paramiko's
``sock=``. Imports are lazy: the ProxyCommand starts on every ssh connection.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing would cost more than the whole ProxyCommand path
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
