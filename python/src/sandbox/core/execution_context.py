"""``from sandbox.core.execution_context import PersistentExecutionContext``, as in the seed."""

from hutch.session import PersistentExecutionContext

__all__ = ["PersistentExecutionContext"]
