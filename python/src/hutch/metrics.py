"""`sandbox.metrics`: resource usage of a sandbox (the agent's `GET /metrics/snapshot`).

`all()` flattens the agent's snapshot into the names the seed (and the microsandbox SDK it
descends from) uses — ``cpu_usage`` in percent, ``memory_usage`` in MiB, ``disk_usage`` in bytes,
``running`` — and keeps the whole snapshot under ``raw``. `get(name)` takes one of those names or
a dotted path into the snapshot, e.g. ``"system.memory.total"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import BaseSandbox

__all__ = ["Metrics"]


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            raise KeyError(path)
        data = data[part]
    return data


def _opt(data: Dict[str, Any], path: str) -> Any:
    try:
        return _dig(data, path)
    except KeyError:
        return None


class Metrics:
    """Reads one sandbox's metrics."""

    def __init__(self, sandbox: "BaseSandbox") -> None:
        self._sandbox = sandbox

    async def snapshot(self) -> Dict[str, Any]:
        """The agent's metrics snapshot, unchanged."""
        reply = await self._sandbox._agent("GET", "/metrics/snapshot")
        return reply if isinstance(reply, dict) else {}

    async def all(self) -> Dict[str, Any]:
        """Every metric, by name (see the module docstring); ``raw`` holds the snapshot."""
        snap = await self.snapshot()
        info = await self._sandbox.info()
        memory_used = _opt(snap, "system.memory.used")
        memory_total = _opt(snap, "system.memory.total")
        return {
            "name": self._sandbox.name,
            "sandbox_id": self._sandbox.sandbox_id,
            "running": info.get("status") == "running",
            "status": info.get("status"),
            "cpu_usage": _opt(snap, "system.cpu.usage_percent"),
            "cpu_cores": _opt(snap, "system.cpu.cores"),
            "memory_usage": _mib(memory_used),
            "memory_total": _mib(memory_total),
            "memory_percent": _opt(snap, "system.memory.usage_percent"),
            "disk_usage": _opt(snap, "system.disk.used"),
            "disk_total": _opt(snap, "system.disk.total"),
            "process_count": _opt(snap, "process.count"),
            "uptime_seconds": snap.get("uptime_seconds"),
            "total_executions": snap.get("total_executions"),
            "active_executions": snap.get("active_executions"),
            "timestamp": snap.get("timestamp"),
            "raw": snap,
        }

    async def get(self, name: str) -> Any:
        """One metric: a name from `all()` or a dotted path into the raw snapshot.

        Raises `KeyError` (listing the known names) for an unknown name, rather than returning
        ``None`` for a typo.
        """
        metrics = await self.all()
        if name in metrics:
            return metrics[name]
        try:
            return _dig(metrics["raw"], name)
        except KeyError:
            known = ", ".join(k for k in metrics if k != "raw")
            raise KeyError(f"unknown metric {name!r}; known: {known}, or a path into 'raw'")

    async def cpu(self) -> Optional[float]:
        """CPU usage in percent."""
        return await self.get("cpu_usage")  # type: ignore[no-any-return]

    async def memory(self) -> Optional[float]:
        """Memory in use, MiB."""
        return await self.get("memory_usage")  # type: ignore[no-any-return]

    async def disk(self) -> Optional[int]:
        """Disk in use, bytes."""
        return await self.get("disk_usage")  # type: ignore[no-any-return]

    async def is_running(self) -> bool:
        """Whether the sandbox is running (not paused, stopped or gone)."""
        return bool(await self.get("running"))


def _mib(value: Any) -> Optional[float]:
    if isinstance(value, (int, float)):
        return round(value / (1024 * 1024), 2)
    return None
