"""The seed document's import names (``from sandbox import LocalSandbox, ...``).

A thin alias of `hutch`: every name is the same object as in `hutch`, so code written against the
"Enhanced Sandbox SDK" document runs unchanged on hutch.
"""

from hutch import *  # noqa: F401,F403  (re-exported; the list is hutch's own)
from hutch import __all__ as __all__
