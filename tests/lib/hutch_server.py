"""One real `hutch serve` for a Python test suite, with its own spawner and data directory.

Shared by the suites under tests/ (their conftest.py puts this directory on `sys.path`).

Process tree (this machine's PID 1 never reaps orphans, so every process started must be reaped
by the suite):

    pytest
    ├── hutch __spawner DATA/run/spawner.sock   parent and reaper of every sandbox init
    └── hutch serve --data-dir DATA ...         finds the spawner's socket and uses it

`stop()`: SIGTERM the server, `hutch purge --data-dir DATA` (kills every sandbox and asks the
spawner to exit), then wait() for the spawner (terminating it if purge could not).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hutch_binary() -> Path:
    """`HUTCH_BIN`, or the debug build the suites' run.sh made."""
    b = os.environ.get("HUTCH_BIN")
    p = Path(b) if b else REPO / "target" / "debug" / "hutch"
    if not p.is_file():
        raise RuntimeError(f"hutch binary not found at {p} (set HUTCH_BIN or use the suite's run.sh)")
    return p


@contextlib.contextmanager
def deadline(seconds: int, what: str = "test") -> Iterator[None]:
    """Fails the code inside with `TimeoutError` after `seconds` (SIGALRM; no plugin needed), so
    one hung call fails its test instead of the whole run."""

    def on_alarm(signum, frame):  # type: ignore[no-untyped-def]
        raise TimeoutError(f"{what} exceeded its {seconds}s deadline")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class HutchServer:
    """`keep_data_env`: an environment variable that, when set, keeps the data directory."""

    def __init__(
        self,
        binary: Path,
        *,
        api_key: str,
        pool_size: str = "2",
        log_filter: str = "info",
        prefix: str = "hutch-test-",
        keep_data_env: str = "HUTCH_KEEP_DATA",
        port: Optional[int] = None,
    ) -> None:
        self.binary = binary
        self.api_key = api_key
        self.pool_size = pool_size
        self.log_filter = log_filter
        self.keep_data_env = keep_data_env
        self.data_dir = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir / "server.log"
        self.spawner: Optional[subprocess.Popen[bytes]] = None
        self.server: Optional[subprocess.Popen[bytes]] = None

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        self._start_spawner()
        self._start_server()

    def restart_server(self) -> None:
        """SIGTERM the server and start it again on the same port and data directory (the
        spawner, and so every sandbox, keeps running)."""
        self._stop_server()
        self._start_server()

    def _start_spawner(self) -> None:
        run = self.data_dir / "run"
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock = run / "spawner.sock"
        with open(run / "spawner.log", "ab") as spawner_log:
            self.spawner = subprocess.Popen(
                [str(self.binary), "__spawner", str(sock)],
                stdin=subprocess.DEVNULL,
                stdout=spawner_log,
                stderr=spawner_log,
            )
        limit = time.monotonic() + 10
        while not sock.exists():
            if self.spawner.poll() is not None:
                raise RuntimeError(f"spawner exited with {self.spawner.returncode}")
            if time.monotonic() > limit:
                raise RuntimeError("spawner did not create its socket within 10 s")
            time.sleep(0.005)

    def _start_server(self) -> None:
        with open(self.log_path, "ab") as log:
            self.server = subprocess.Popen(
                [
                    str(self.binary), "serve",
                    "--listen", f"127.0.0.1:{self.port}",
                    "--data-dir", str(self.data_dir),
                    "--api-key", self.api_key,
                    "--pool-size", self.pool_size,
                    "--log", self.log_filter,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        limit = time.monotonic() + 30
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"hutch serve exited with {self.server.returncode}:\n{self.log()}")
            if self.healthy():
                return
            if time.monotonic() > limit:
                raise RuntimeError(f"hutch serve not healthy within 30 s:\n{self.log()}")
            time.sleep(0.02)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                return r.status == 200 and json.loads(r.read()).get("status") == "healthy"
        except (OSError, ValueError):
            return False

    # -- stop --------------------------------------------------------------------------------

    def _stop_server(self) -> None:
        if self.server is not None:
            if self.server.poll() is None:
                self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.server = None

    def stop(self) -> None:
        self._stop_server()
        purge = subprocess.run(
            [str(self.binary), "purge", "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        if purge.returncode != 0:
            print(f"hutch purge failed ({purge.returncode}):\n{purge.stdout}")
        if self.spawner is not None:
            try:
                self.spawner.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.spawner.terminate()
                try:
                    self.spawner.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.spawner.kill()
                    self.spawner.wait()
        # Never delete through a mount that a failed purge left behind (a sandbox root can
        # contain read-only binds of host directories).
        mounted = str(self.data_dir) in Path("/proc/self/mountinfo").read_text()
        if os.environ.get(self.keep_data_env) or purge.returncode != 0 or mounted:
            print(f"data dir kept: {self.data_dir}")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
