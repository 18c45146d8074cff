"""The rotator's one domain error: a problem said in one line. The entry
(``rotator.cli``) catches it once, with the scheme's ``SchemeError``."""

from __future__ import annotations


class RotatorError(RuntimeError):
    pass
