"""Finding a hutch server: a configured one, or one this process starts for itself.

"Local" sandboxes in the seed document need no set-up, so when no server is configured the SDK
runs its own: `hutch serve` on a free 127.0.0.1 port with a temporary data directory, a random API
key and no warm pool. It is shared by everything "local" in the process (sandboxes and
`PersistentExecutionContext`s — a session is only found again on the server that holds it), counted
by references, and torn down when the last user lets go or at interpreter exit: the server is
stopped and `hutch purge` removes every sandbox it made and stops its spawner, so nothing outlives
the program.

Process tree, as in the repository's test harness: the spawner (`hutch __spawner SOCK`, parent and
reaper of every sandbox init) and the server are both *our* children, so they are reaped by us
even on machines whose PID 1 reaps nothing.

A configured server is used instead whenever ``HUTCH_URL`` or ``HUTCH_API_KEY`` is set, resolved as
the hutch CLI does: URL from ``HUTCH_URL``, else ``url`` in ``$XDG_CONFIG_HOME/hutch/config.toml``,
else ``http://127.0.0.1:7770``; key from ``HUTCH_API_KEY``, else ``api_key`` in that file, else the
key a server on this machine saved in ``/var/lib/hutch/api_key``.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Callable, List, Optional, Tuple

import httpx

from ._http import Api
from .errors import SandboxConnectionError

__all__ = [
    "LocalServer",
    "find_binary",
    "configured_server",
    "connect",
    "acquire_local_server",
    "release_local_server",
]

DEFAULT_URL = "http://127.0.0.1:7770"
_SERVER_KEY_FILE = Path("/var/lib/hutch/api_key")
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0


# -------------------------------------------------------------------------------------------------
# A configured server.
# -------------------------------------------------------------------------------------------------


def _config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hutch" / "config.toml"


def _config_value(key: str) -> Optional[str]:
    """Reads ``key = "value"`` from the CLI's config file (a two-key TOML file: a regex suffices,
    and keeps Python 3.9/3.10, which lack `tomllib`, supported)."""
    try:
        text = _config_file().read_text()
    except OSError:
        return None
    m = re.search(rf'^\s*{key}\s*=\s*["\']([^"\']*)["\']\s*$', text, re.MULTILINE)
    return m.group(1) if m else None


def configured_server() -> Optional[Tuple[str, str]]:
    """The (url, api_key) of a server named by the environment, or None when the SDK should run
    its own. Raises `SandboxConnectionError` when a URL is configured but no key can be found."""
    if not (os.environ.get("HUTCH_URL") or os.environ.get("HUTCH_API_KEY")):
        return None
    url = os.environ.get("HUTCH_URL") or _config_value("url") or DEFAULT_URL
    key = os.environ.get("HUTCH_API_KEY") or _config_value("api_key")
    if not key:
        try:
            key = _SERVER_KEY_FILE.read_text().strip()
        except OSError:
            key = ""
    if not key:
        raise SandboxConnectionError(
            f"HUTCH_URL is {url} but no API key is configured: set HUTCH_API_KEY"
        )
    return url, key


# -------------------------------------------------------------------------------------------------
# The binary.
# -------------------------------------------------------------------------------------------------


def find_binary() -> Path:
    """The `hutch` executable: ``HUTCH_BIN``, else ``hutch`` on PATH, else a build in a Cargo
    workspace above the current directory or above this package (``target/release/hutch`` or
    ``target/debug/hutch``, the more recently built of the two, so a stale release build never
    shadows the debug build a developer just made)."""
    env = os.environ.get("HUTCH_BIN")
    if env:
        p = Path(env)
        if p.is_file() and os.access(p, os.X_OK):
            return p
        raise SandboxConnectionError(f"HUTCH_BIN={env} is not an executable file")
    on_path = shutil.which("hutch")
    if on_path:
        return Path(on_path)
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for d in (start, *start.parents):
            builds: List[Path] = [
                d / "target" / kind / "hutch"
                for kind in ("release", "debug")
                if (d / "target" / kind / "hutch").is_file()
            ]
            if builds and (d / "Cargo.toml").is_file():
                return max(builds, key=lambda p: p.stat().st_mtime)
    raise SandboxConnectionError(
        "no hutch binary found: set HUTCH_BIN, put `hutch` on PATH, or build it with "
        "`cargo build -p hutch` — or point HUTCH_URL/HUTCH_API_KEY at a running server"
    )


# -------------------------------------------------------------------------------------------------
# A server this process runs.
# -------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """`hutch serve` run by this process, with its own spawner and temporary data directory.

    Needs root, like the server itself (sandboxes use namespaces, cgroups and overlayfs). Usable
    as a context manager; `stop()` is idempotent and leaves no sandbox, spawner or mount behind.
    """

    def __init__(
        self, binary: Optional[Path] = None, *, pool_size: int = 0, log: str = "warn"
    ) -> None:
        self.binary = Path(binary) if binary else find_binary()
        self.pool_size = pool_size
        self.log_filter = log
        self.api_key = "sdk-" + secrets.token_urlsafe(24)
        self.port = 0
        self.data_dir: Optional[Path] = None
        self._spawner: Optional["subprocess.Popen[bytes]"] = None
        self._server: Optional["subprocess.Popen[bytes]"] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def __enter__(self) -> "LocalServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Starts the spawner and the server and waits until `/health` answers."""
        if self._server is not None:
            return
        if os.geteuid() != 0:
            raise SandboxConnectionError(
                "starting a local hutch server needs root (sandboxes use namespaces, cgroups and "
                "overlayfs); run as root or point HUTCH_URL/HUTCH_API_KEY at a running server"
            )
        self.data_dir = Path(tempfile.mkdtemp(prefix="hutch-sdk-")).resolve()
        self.port = _free_port()
        try:
            self._start_spawner()
            self._start_server()
        except BaseException:
            self.stop()
            raise

    def _log(self, name: str) -> IO[bytes]:
        assert self.data_dir is not None
        return open(self.data_dir / name, "ab")

    def _start_spawner(self) -> None:
        assert self.data_dir is not None
        run = self.data_dir / "run"
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock = run / "spawner.sock"
        with self._log("spawner.log") as log:
            self._spawner = subprocess.Popen(
                [str(self.binary), "__spawner", str(sock)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while not sock.exists():
            if self._spawner.poll() is not None:
                raise SandboxConnectionError(
                    f"hutch spawner exited with {self._spawner.returncode}:\n"
                    + self.log_tail("spawner.log")
                )
            if time.monotonic() > deadline:
                raise SandboxConnectionError("hutch spawner did not start within 10 s")
            time.sleep(0.01)

    def _start_server(self) -> None:
        assert self.data_dir is not None
        argv = [
            str(self.binary), "serve",
            "--listen", f"127.0.0.1:{self.port}",
            "--data-dir", str(self.data_dir),
            "--api-key", self.api_key,
            "--pool-size", str(self.pool_size),
            "--log", self.log_filter,
        ]  # fmt: skip
        with self._log("server.log") as log:
            self._server = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._server.poll() is not None:
                raise SandboxConnectionError(
                    f"hutch serve exited with {self._server.returncode}:\n"
                    + self.log_tail("server.log")
                )
            try:
                r = httpx.get(f"{self.url}/health", timeout=1)
                if r.status_code == 200 and r.json().get("status") == "healthy":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise SandboxConnectionError(
                    f"hutch serve was not healthy within {_START_TIMEOUT:.0f} s:\n"
                    + self.log_tail("server.log")
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Stops the server, removes every sandbox (`hutch purge`), reaps the spawner and deletes
        the data directory — unless something is still mounted under it, in which case it is kept
        rather than deleted through a mount."""
        if self._server is not None:
            _terminate(self._server)
            self._server = None
        purged = True
        if self.data_dir is not None and self._spawner is not None:
            purge = subprocess.run(
                [str(self.binary), "purge", "--data-dir", str(self.data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=120,
            )
            purged = purge.returncode == 0
        if self._spawner is not None:
            try:
                self._spawner.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _terminate(self._spawner)
            self._spawner = None
        if self.data_dir is not None:
            mounted = str(self.data_dir) in Path("/proc/self/mountinfo").read_text()
            if purged and not mounted and not os.environ.get("HUTCH_SDK_KEEP_DATA"):
                shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def log_tail(self, name: str = "server.log", lines: int = 20) -> str:
        """The last lines of the server's (or spawner's) log, for error messages."""
        if self.data_dir is None:
            return ""
        try:
            text = (self.data_dir / name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()[-lines:])


def _terminate(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -------------------------------------------------------------------------------------------------
# The process-wide shared local server.
# -------------------------------------------------------------------------------------------------

_lock = threading.Lock()
_shared: Optional[LocalServer] = None
_refs = 0


def acquire_local_server() -> LocalServer:
    """The shared local server, started on first use; pair with `release_local_server`."""
    global _shared, _refs
    with _lock:
        if _shared is None or not _shared.running:
            server = LocalServer()
            server.start()
            _shared = server
        _refs += 1
        return _shared


def release_local_server() -> None:
    """Drops one reference; the last one stops the shared server (and removes its sandboxes)."""
    global _shared, _refs
    with _lock:
        _refs = max(0, _refs - 1)
        if _refs == 0 and _shared is not None:
            server, _shared = _shared, None
            server.stop()


@atexit.register
def _stop_at_exit() -> None:
    global _shared, _refs
    with _lock:
        if _shared is not None:
            server, _shared, _refs = _shared, None, 0
            server.stop()


def connect() -> Tuple[Api, Callable[[], None]]:
    """An `Api` on the configured server, or on the shared local server (started if needed),
    plus the function to call when done with it (releases the local server; no-op otherwise)."""
    configured = configured_server()
    if configured is not None:
        return Api(*configured), _noop
    server = acquire_local_server()
    return Api(server.url, server.api_key), _release_once()


def _noop() -> None:
    return None


def _release_once() -> Callable[[], None]:
    done = threading.Event()

    def release() -> None:
        if not done.is_set():
            done.set()
            release_local_server()

    return release
