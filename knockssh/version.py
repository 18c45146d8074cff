"""knockssh's version, in one place (pyproject.toml reads it from here). Nothing to
import: ``--version`` costs the ProxyCommand path nothing."""

VERSION = "0.1.0"
