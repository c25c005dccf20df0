"""Seed: PersistentExecutionContext — execute_code, get_execution_stats, get_execution_history."""

from sandbox.core.execution_context import PersistentExecutionContext

context = PersistentExecutionContext(session_id="optional-session-id")

result = context.execute_code("""
import numpy as np
x = np.array([1, 2, 3, 4, 5])
print(f"Mean: {np.mean(x)}")
""", cache_key="numpy_mean_example")
print(result)
assert result["success"] is True and result["stdout"] == "Mean: 3.0\n", result

stats = context.get_execution_stats()
print(stats)
assert stats["session_id"] == "optional-session-id" and stats["total_executions"] >= 1, stats

history = context.get_execution_history(limit=10)
print(history)
assert history and "timestamp" in history[0], history

context.cleanup_session()
context.close()
