"""`sandbox.core`, as in the seed document (only `execution_context` is provided)."""
