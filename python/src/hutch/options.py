"""Sandbox options and their fluent builder (the seed's `SandboxOptions.builder()`).

The built `SandboxConfig` is a plain dataclass whose fields are exactly the keyword arguments of
every `create(...)`, because the seed passes it as ``LocalSandbox.create(**config.__dict__)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

__all__ = ["SandboxConfig", "SandboxOptions", "SandboxOptionsBuilder"]


@dataclass
class SandboxConfig:
    """Options of a sandbox.

    Attributes:
        name: A label for the sandbox, kept by the SDK (shown in `repr`); the server has no names.
        memory: Memory limit in MiB (the sandbox's cgroup limit).
        cpus: CPU allocation; the server takes whole CPUs, so fractions are rounded up.
        timeout: Default timeout in seconds of each `run()` and `command.run()`.
        env: Environment variables of every process in the sandbox.
    """

    name: Optional[str] = None
    memory: Optional[int] = None
    cpus: Optional[float] = None
    timeout: Optional[float] = None
    env: Dict[str, str] = field(default_factory=dict)


class SandboxOptionsBuilder:
    """Fluent builder: every setter returns the builder, `build()` returns a `SandboxConfig`."""

    def __init__(self) -> None:
        self._config = SandboxConfig()

    def name(self, name: str) -> "SandboxOptionsBuilder":
        """Sets the sandbox's name (a client-side label)."""
        self._config.name = name
        return self

    def memory(self, mb: int) -> "SandboxOptionsBuilder":
        """Sets the memory limit in MiB."""
        if mb <= 0:
            raise ValueError("memory must be a positive number of MiB")
        self._config.memory = int(mb)
        return self

    def cpus(self, count: float) -> "SandboxOptionsBuilder":
        """Sets the CPU allocation (rounded up to whole CPUs by the server)."""
        if count <= 0:
            raise ValueError("cpus must be positive")
        self._config.cpus = float(count)
        return self

    def timeout(self, seconds: float) -> "SandboxOptionsBuilder":
        """Sets the default execution timeout in seconds."""
        if seconds <= 0:
            raise ValueError("timeout must be positive")
        self._config.timeout = float(seconds)
        return self

    def env(self, key: str, value: str) -> "SandboxOptionsBuilder":
        """Adds an environment variable."""
        self._config.env[key] = value
        return self

    def build(self) -> SandboxConfig:
        """The configuration (a copy: the builder can be reused)."""
        c = self._config
        return SandboxConfig(c.name, c.memory, c.cpus, c.timeout, dict(c.env))


class SandboxOptions:
    """Entry point of the builder: ``SandboxOptions.builder().name("x").memory(1024).build()``."""

    @staticmethod
    def builder() -> SandboxOptionsBuilder:
        return SandboxOptionsBuilder()
