"""The version of both commands, from this one constant (pyproject.toml reads it)."""

VERSION = "0.1.0"
