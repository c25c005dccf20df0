# hutch Python kernel: one long-lived interpreter per sandbox context, driven by the agent.
#
# Protocol (the agent's side is crates/hutch-agent/src/kernels/proc.rs):
#   fd 3  agent -> kernel  frames: u32 LE length, then a JSON object ({"type": "execute", ...})
#   fd 4  kernel -> agent  frames: u32 LE length, then one kind byte and the payload:
#         b"o" stdout bytes, b"e" stderr bytes, b"j" a JSON object (ready, display, result,
#         error, done)
#   fd 5, fd 6  read ends of this process's own fd 1 and fd 2 pipes. Output written at the fd
#         level (subprocesses, C libraries) is read back here and sent on fd 4 in the same
#         ordered stream as Python-level output, so stdout and stderr keep their order.
#
# Start-up time matters (the first run_code of a new sandbox waits for it), so this file imports
# only modules that are built in or already loaded by `site`: no json (it pulls in re), no
# signal/ast (enum), no threading, hashlib or traceback. Those are loaded lazily when needed.

import sys
import os
import builtins
import _thread
import _signal
import _ast
import select as _select

_CMD_FD, _EVT_FD, _OUT_FD, _ERR_FD = 3, 4, 5, 6
_HERE = __file__
_MAIN_THREAD = _thread.get_ident()

# ---------------------------------------------------------------------------------------------
# JSON through the C accelerator directly (json.py imports re, which costs milliseconds).

try:
    import _json

    class _ScanContext:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = float
        memo = {}

    _scanner = _json.make_scanner(_ScanContext())

    def _loads(text):
        obj, _end = _scanner(text, 0)
        return obj

    def _repr_default(obj):
        return repr(obj)

    def _dumps(obj):
        enc = _json.make_encoder(
            {}, _repr_default, _json.encode_basestring, None, ":", ",", False, False, False
        )
        return "".join(enc(obj, 0))

    _dumps({"probe": [1, 2.5, None, True, "x"]})
    _loads('{"probe":[1,2.5,null,true,"x"]}')
except Exception:  # pragma: no cover - other Python builds
    import json as _jsonmod

    def _loads(text):
        return _jsonmod.loads(text)

    def _dumps(obj):
        return _jsonmod.dumps(
            obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=repr
        )


def _b64(data):
    import binascii

    return binascii.b2a_base64(bytes(data), newline=False).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Output: an ordered, buffered event stream on fd 4.

_lock = _thread.allocate_lock()
_pending = []  # [kind, bytearray] runs, same-kind neighbours merged
_pending_size = 0
_running = False  # a cell is executing (buffer output; flush every few ms)
_in_user = False  # user code is on the main thread's stack (SIGINT raises KeyboardInterrupt)
_crit = 0  # the main thread is inside a critical section (SIGINT is deferred)
_deferred_int = False
_last_drain = 0
_is_fork_child = False
_wake_r, _wake_w = os.pipe()
_FLUSH_BYTES = 65536
_monotonic_ns = __import__("time").monotonic_ns


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            os._exit(0)  # the agent is gone
        view = view[n:]


def _frame(kind, payload):
    return (len(payload) + 1).to_bytes(4, "little") + kind + payload


def _flush_locked():
    global _pending_size
    if not _pending:
        return
    parts = []
    for kind, data in _pending:
        # Keep frames at most 1 MiB so the agent never holds a huge single buffer.
        for i in range(0, len(data), 1 << 20):
            parts.append(_frame(kind, bytes(data[i : i + (1 << 20)])))
    _pending.clear()
    _pending_size = 0
    _write_all(_EVT_FD, b"".join(parts))


def _append_locked(kind, data):
    global _pending_size
    if _pending and _pending[-1][0] == kind:
        _pending[-1][1] += data
    else:
        _pending.append([kind, bytearray(data)])
    _pending_size += len(data)


def _drain_fds_locked():
    """Moves whatever subprocesses wrote to fd 1/2 into the pending buffer, so output written
    before a Python-level write is sent before it."""
    global _last_drain
    _last_drain = _monotonic_ns()
    for fd, kind in ((_OUT_FD, b"o"), (_ERR_FD, b"e")):
        while True:
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not data:
                break
            _append_locked(kind, data)


def _enter():
    global _crit
    if _thread.get_ident() == _MAIN_THREAD:
        _crit += 1


def _leave():
    global _crit, _deferred_int
    if _thread.get_ident() == _MAIN_THREAD:
        _crit -= 1
        if _crit == 0 and _deferred_int:
            _deferred_int = False
            if _in_user:
                raise KeyboardInterrupt


def _emit(kind, data):
    if _is_fork_child:
        _write_all(1 if kind == b"o" else 2, data)
        return
    _enter()
    try:
        with _lock:
            # A subprocess that finished before this write may have output waiting in the fd
            # pipes; a drain costs a syscall or two, so only when time has passed since the last.
            if _monotonic_ns() - _last_drain > 200_000:
                _drain_fds_locked()
            _append_locked(kind, data)
            if _pending_size >= _FLUSH_BYTES or not _running:
                _flush_locked()
    finally:
        _leave()


def _flush():
    if _is_fork_child:
        return
    _enter()
    try:
        with _lock:
            _drain_fds_locked()
            _flush_locked()
    finally:
        _leave()


def _send(msg):
    """Sends a JSON message after all output written before it."""
    if _is_fork_child:
        return
    try:
        payload = _dumps(msg).encode("utf-8", "replace")
    except Exception:
        if msg.get("type") not in ("display", "result"):
            raise
        msg = dict(msg)
        msg["data"] = _jsonable(msg.get("data") or {})
        payload = _dumps(msg).encode("utf-8", "replace")
    _enter()
    try:
        with _lock:
            _drain_fds_locked()
            _flush_locked()
            _write_all(_EVT_FD, _frame(b"j", payload))
    finally:
        _leave()


def _jsonable(data):
    """Drops the MIME entries that cannot be encoded, with a warning."""
    out = {}
    for mime, value in data.items():
        try:
            _dumps(value)
            out[mime] = value
        except Exception as e:
            _emit(b"e", f"[hutch] cannot encode {mime} output: {e}\n".encode())
    return out


def _pump():
    """Background thread: forwards fd-level output and flushes buffered output every few ms
    while a cell runs. Exits the process when the agent closes the command pipe."""
    poller = _select.poll()
    POLLIN, POLLHUP = _select.POLLIN, _select.POLLHUP
    live = {_OUT_FD: b"o", _ERR_FD: b"e"}
    for fd in live:
        poller.register(fd, POLLIN)
    poller.register(_wake_r, POLLIN)
    poller.register(_CMD_FD, 0)  # POLLHUP only: the agent went away
    while True:
        try:
            events = poller.poll(5 if _running else None)
        except InterruptedError:
            continue
        with _lock:
            for fd, ev in events:
                if fd == _CMD_FD:
                    if ev & (POLLHUP | _select.POLLERR):
                        os._exit(0)
                    continue
                if fd == _wake_r:
                    try:
                        os.read(_wake_r, 512)
                    except OSError:
                        pass
                    continue
                try:
                    data = os.read(fd, 65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    _append_locked(live[fd], data)
                elif ev & POLLHUP or not data:
                    poller.unregister(fd)
            _flush_locked()


class _Writer:
    """sys.stdout / sys.stderr: text goes into the ordered event stream."""

    encoding = "utf-8"
    errors = "replace"
    newlines = None
    line_buffering = False
    write_through = True
    closed = False

    def __init__(self, kind, fd, name):
        self._kind = kind
        self._fd = fd
        self.name = name
        self.buffer = _BinaryWriter(kind, fd)

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if s:
            _emit(self._kind, s.encode("utf-8", "replace"))
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        _flush()

    def fileno(self):
        return self._fd

    def isatty(self):
        return False

    def readable(self):
        return False

    def writable(self):
        return True

    def seekable(self):
        return False

    def close(self):
        pass

    def __repr__(self):
        return f"<hutch stream {self.name}>"


class _BinaryWriter:
    closed = False

    def __init__(self, kind, fd):
        self._kind = kind
        self._fd = fd

    def write(self, b):
        data = bytes(b)
        if data:
            _emit(self._kind, data)
        return len(data)

    def flush(self):
        _flush()

    def fileno(self):
        return self._fd

    def isatty(self):
        return False

    def writable(self):
        return True


def _after_fork_in_child():
    """A forked child (multiprocessing) must not write frames: they would interleave with the
    parent's. It writes plain bytes to fd 1/2, which the parent forwards."""
    global _is_fork_child, _lock, _running
    _is_fork_child = True
    _lock = _thread.allocate_lock()
    _pending.clear()
    _running = False
    for fd in (_CMD_FD, _EVT_FD, _OUT_FD, _ERR_FD, _wake_r, _wake_w):
        try:
            os.close(fd)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Rich display (the IPython display protocol).

_REPR_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
    ("application/pdf", "_repr_pdf_"),
)
_BINARY_MIMES = ("image/png", "image/jpeg", "application/pdf")
_MAX_TEXT = 1 << 20
_DATAFRAME_ROWS = 1000


def _warn(text):
    _emit(b"e", (text if text.endswith("\n") else text + "\n").encode("utf-8", "replace"))


def _formatter_failed(obj, method, exc):
    _warn(f"[hutch] {type(obj).__name__}.{method}() raised {type(exc).__name__}: {exc}")


def _text_repr(obj):
    try:
        text = repr(obj)
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        text = f"<{type(obj).__name__} object; repr() raised {type(e).__name__}: {e}>"
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + "…"
    return text


def _is_instance(obj, module, name):
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return cls is not None and isinstance(obj, cls)


def _dataframe_json(df):
    import json

    head = df.head(_DATAFRAME_ROWS)
    out = json.loads(head.to_json(orient="split", date_format="iso", default_handler=str))
    out["shape"] = list(df.shape)
    out["dtypes"] = {str(c): str(t) for c, t in df.dtypes.items()}
    out["truncated"] = len(df) > _DATAFRAME_ROWS
    return out


def _figure_png(fig):
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return _b64(buf.getvalue())


def _bundle(obj):
    """The MIME bundle of `obj`, like IPython's display formatter."""
    data = {}
    metadata = {}
    if not isinstance(obj, type):
        method = getattr(obj, "_repr_mimebundle_", None) if hasattr(obj, "_repr_mimebundle_") else None
        if callable(method):
            try:
                try:
                    r = method(include=None, exclude=None)
                except TypeError:
                    r = method()
                if isinstance(r, tuple) and len(r) == 2:
                    r, md = r
                    if isinstance(md, dict):
                        metadata.update(md)
                if isinstance(r, dict):
                    data.update(r)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                _formatter_failed(obj, "_repr_mimebundle_", e)
        for mime, name in _REPR_METHODS:
            if mime in data:
                continue
            try:
                f = getattr(obj, name, None)
            except Exception:
                f = None
            if not callable(f):
                continue
            try:
                v = f()
            except NotImplementedError:
                continue
            except KeyboardInterrupt:
                raise
            except Exception as e:
                _formatter_failed(obj, name, e)
                continue
            if isinstance(v, tuple) and len(v) == 2:
                v, md = v
                if isinstance(md, dict):
                    metadata[mime] = md
            if v is not None:
                data[mime] = v
        if _is_instance(obj, "pandas.core.frame", "DataFrame"):
            try:
                data["application/vnd.dataframe+json"] = _dataframe_json(obj)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                _formatter_failed(obj, "to_json", e)
        elif _is_instance(obj, "matplotlib.figure", "Figure") and "image/png" not in data:
            try:
                data["image/png"] = _figure_png(obj)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                _formatter_failed(obj, "savefig", e)
    for mime in _BINARY_MIMES:
        v = data.get(mime)
        if isinstance(v, (bytes, bytearray, memoryview)):
            data[mime] = _b64(v)
    if "text/plain" not in data:
        data["text/plain"] = _text_repr(obj)
    return data, metadata


def display(*objs, include=None, exclude=None, metadata=None, raw=False, **_kwargs):
    """Shows objects as rich output, like IPython's display()."""
    for obj in objs:
        if raw and isinstance(obj, dict):
            data, md = dict(obj), dict(metadata or {})
        else:
            data, md = _bundle(obj)
            if metadata:
                md.update(metadata)
        if include:
            data = {k: v for k, v in data.items() if k in include}
        if exclude:
            data = {k: v for k, v in data.items() if k not in exclude}
        msg = {"type": "display", "data": data}
        if md:
            msg["metadata"] = md
        _send(msg)


def _flush_figures():
    """Inline-backend behaviour: every open pyplot figure becomes a PNG display, then closes."""
    plt = sys.modules.get("matplotlib.pyplot")
    helpers = sys.modules.get("matplotlib._pylab_helpers")
    if plt is None or helpers is None:
        return
    try:
        managers = helpers.Gcf.get_all_fig_managers()
    except Exception:
        return
    if not managers:
        return
    try:
        for manager in managers:
            fig = manager.canvas.figure
            try:
                png = _figure_png(fig)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                _formatter_failed(fig, "savefig", e)
                continue
            _send({"type": "display", "data": {"image/png": png, "text/plain": _text_repr(fig)}})
    finally:
        try:
            plt.close("all")
        except Exception:
            pass


class StdinNotImplementedError(RuntimeError):
    """input() in a kernel: there is nobody to type an answer."""


StdinNotImplementedError.__module__ = "builtins"


def _input(prompt=""):
    if prompt:
        sys.stdout.write(str(prompt))
    raise StdinNotImplementedError(
        "input() is not supported: code runs non-interactively and has no stdin. "
        "Put the value in the code, an environment variable or a file instead."
    )


# ---------------------------------------------------------------------------------------------
# Import hooks: act when matplotlib.pyplot, linecache or IPython.display are imported.

_ModuleSpec = type(sys.__spec__)


def _hook_pyplot(mod):
    def show(*_args, **_kwargs):
        _flush_figures()

    show.__doc__ = "Displays all open figures as PNG output (hutch inline backend)."
    mod.show = show


def _hook_linecache(mod):
    for filename, source in _sources.items():
        mod.cache[filename] = (len(source), None, source.splitlines(True), filename)


def _hook_ipython_display(mod):
    mod.display = display


_POST_IMPORT = {
    "matplotlib.pyplot": _hook_pyplot,
    "linecache": _hook_linecache,
    "IPython.core.display_functions": _hook_ipython_display,
    "IPython.core.display": _hook_ipython_display,
    "IPython.display": _hook_ipython_display,
}


class _ShimLoader:
    """Minimal `IPython` / `IPython.display` for templates without IPython."""

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == "IPython":
            module.__path__ = []
            module.get_ipython = lambda: None
            module.display = display
        else:
            _fill_display_shim(module)


def _fill_display_shim(m):
    class DisplayObject:
        _mime = "text/plain"

        def __init__(self, data=None, url=None, filename=None, metadata=None, **_kw):
            if data is None and filename is not None:
                mode = "r" if self._mime.startswith("text/") or self._mime.endswith("json") else "rb"
                with open(filename, mode) as f:
                    data = f.read()
            self.data = data
            self.url = url
            self.metadata = metadata

        def __repr__(self):
            return f"<IPython.core.display.{type(self).__name__} object>"

    def simple(name, mime, method, wrap=None):
        def repr_method(self):
            return wrap(self.data) if wrap else self.data

        cls = type(name, (DisplayObject,), {"_mime": mime, method: repr_method})
        setattr(m, name, cls)

    simple("HTML", "text/html", "_repr_html_")
    simple("Markdown", "text/markdown", "_repr_markdown_")
    simple("Latex", "text/latex", "_repr_latex_")
    simple("Math", "text/latex", "_repr_latex_", lambda d: f"$\\displaystyle {d}$")
    simple("SVG", "image/svg+xml", "_repr_svg_")
    simple("Javascript", "application/javascript", "_repr_javascript_")
    simple("JSON", "application/json", "_repr_json_")

    class Image(DisplayObject):
        _mime = "image/png"

        def __init__(self, data=None, url=None, filename=None, format=None, **kw):
            if isinstance(data, str) and filename is None and len(data) < 4096 and os.path.exists(data):
                data, filename = None, data
            super().__init__(data=data, url=url, filename=filename, **kw)
            fmt = (format or "").lower()
            if not fmt and isinstance(self.data, (bytes, bytearray)):
                fmt = "jpeg" if bytes(self.data[:3]) == b"\xff\xd8\xff" else "png"
            self.format = fmt or "png"

        def _repr_png_(self):
            return self.data if self.format == "png" else None

        def _repr_jpeg_(self):
            return self.data if self.format in ("jpeg", "jpg") else None

    m.Image = Image
    m.DisplayObject = DisplayObject
    m.display = display
    m.clear_output = lambda wait=False: None
    m.update_display = lambda *a, **k: None


class _Finder:
    """First on sys.meta_path: wraps the real loader of hooked modules; serves the IPython shim
    when IPython is not installed."""

    def find_spec(self, name, path=None, target=None):
        hook = _POST_IMPORT.get(name)
        if hook is None and name not in ("IPython", "IPython.display"):
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                spec = find(name, path, target)
            except Exception:
                spec = None
            if spec is not None:
                break
        if spec is None:
            if name == "IPython" or (name == "IPython.display" and _shim_ipython()):
                return _ModuleSpec(name, _ShimLoader(), is_package=(name == "IPython"))
            return None
        loader = spec.loader
        if hook is None or loader is None or isinstance(loader, type):
            return spec
        original = getattr(loader, "exec_module", None)
        if original is None:
            return spec

        def exec_module(module, _original=original, _hook=hook):
            _original(module)
            try:
                _hook(module)
            except Exception:
                pass

        try:
            loader.exec_module = exec_module
        except Exception:
            pass
        return spec


def _shim_ipython():
    mod = sys.modules.get("IPython")
    return mod is not None and isinstance(getattr(mod, "__spec__", None) and mod.__spec__.loader, _ShimLoader)


# ---------------------------------------------------------------------------------------------
# Cells.

_ns = None  # the user's namespace (the __main__ module's dict)
_count = 0
_compiled = {}  # source -> (body code, last-expression code)  — the compilation cache
_COMPILE_CACHE_MAX = 1000
_sources = {}  # cell filename -> source, for tracebacks and inspect
_applied_env = dict(os.environ)
_loop = None
_FLAGS = getattr(_ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
_CO_COROUTINE = 0x80


def _register_source(filename, source):
    _sources[filename] = source
    linecache = sys.modules.get("linecache")
    if linecache is not None:
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def _compile(source):
    """Returns (body code or None, last-expression code or None, cache hit)."""
    hit = _compiled.pop(source, None)
    if hit is not None:
        _compiled[source] = hit  # most recently used at the end
        return hit[0], hit[1], True
    filename = f"<cell-{_count}>"
    _register_source(filename, source)
    tree = compile(source, filename, "exec", _ast.PyCF_ONLY_AST | _FLAGS, dont_inherit=True)
    last = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr) and not source.rstrip().endswith(";"):
        expr = _ast.Expression(tree.body.pop().value)
        last = compile(expr, filename, "eval", _FLAGS, dont_inherit=True)
    body = compile(tree, filename, "exec", _FLAGS, dont_inherit=True) if tree.body else None
    if len(_compiled) >= _COMPILE_CACHE_MAX:
        _compiled.pop(next(iter(_compiled)))
    _compiled[source] = (body, last)
    return body, last, False


def _run(code):
    result = eval(code, _ns)
    if code.co_flags & _CO_COROUTINE:
        global _loop
        import asyncio

        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
        result = _loop.run_until_complete(result)
    return result


def _apply_env(env):
    global _applied_env
    if env is None:
        return
    for k, v in env.items():
        if _applied_env.get(k) != v:
            os.environ[k] = v
    for k, v in _applied_env.items():
        if k not in env and os.environ.get(k) == v:
            del os.environ[k]
    _applied_env = env


def _apply_cwd(cwd):
    if not cwd:
        return
    try:
        os.makedirs(cwd, exist_ok=True)
        os.chdir(cwd)
    except OSError as e:
        _warn(f"[hutch] cannot change to working directory {cwd}: {e}")


def _report(exc):
    """Sends the exception as an error message and its traceback to stderr, without the
    kernel's own frames."""
    import traceback

    # Rebuild the traceback without this file's frames (the cell runner at the top, and the
    # input()/SIGINT helpers in the middle).
    kept = []
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename != _HERE:
            kept.append(tb)
        tb = tb.tb_next
    tb = None
    for t in reversed(kept):
        tb = type(t)(tb, t.tb_frame, t.tb_lasti, t.tb_lineno)
    try:
        lines = traceback.format_exception(type(exc), exc, tb)
    except Exception:
        lines = [f"{type(exc).__name__}: {exc}\n"]
    text = "".join(lines)
    _emit(b"e", text.encode("utf-8", "replace"))
    try:
        value = str(exc)
    except Exception:
        value = "<unprintable>"
    _send({"type": "error", "ename": type(exc).__name__, "evalue": value, "traceback": text.splitlines()})


# ---------------------------------------------------------------------------------------------
# Sessions: state saved after every successful cell, restored into a fresh kernel.
#
# The state file holds a pickle of {"version", "replay", "values", "dropped"}: `replay` lists
# the top-level imports, functions and classes the session's cells defined ([names, source]),
# re-run on restore because pickle cannot carry them; `values` maps every other picklable
# global to its own pickle, so one value that cannot be loaded drops only itself.
# ---------------------------------------------------------------------------------------------

_SESSION_VERSION = 1
_SESSION_MAX_VALUE = 64 << 20
_SESSION_MAX_TOTAL = 256 << 20  # the state travels to the control plane after every cell
_session_loaded = None  # the state file restored into (or started fresh in) this kernel
_session_replay = []  # [[names, source]] of definitions, oldest first


def _session_restore(path):
    global _session_loaded, _session_replay
    _session_loaded = path
    import pickle

    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except FileNotFoundError:
        return
    except Exception as e:
        _send({"type": "session", "op": "restore", "restored": [],
               "dropped": [{"name": "*", "reason": f"the saved state cannot be read: {type(e).__name__}: {e}"}]})
        return
    restored, dropped = [], []
    _session_replay = [list(x) for x in state.get("replay", [])]
    for names, source in _session_replay:
        try:
            _run(compile(source, "<session-replay>", "exec", _FLAGS, dont_inherit=True))
            restored.extend(n for n in names if n != "*")
        except BaseException as e:
            reason = f"re-running its definition failed: {type(e).__name__}: {e}"
            dropped.extend({"name": n, "reason": reason} for n in names)
    for name, blob in state.get("values", {}).items():
        try:
            _ns[name] = pickle.loads(blob)
            restored.append(name)
        except BaseException as e:
            dropped.append({"name": name, "reason": f"unpickling failed: {type(e).__name__}: {e}"})
    dropped.extend(state.get("dropped", []))
    _send({"type": "session", "op": "restore", "restored": sorted(set(restored)), "dropped": dropped})


def _session_definitions(source):
    """[names, source] of the cell's top-level imports, functions and classes."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.asname or a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [a.asname or a.name for a in node.names]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        else:
            continue
        found.append([names, ast.unparse(node)])
    return found


def _session_persist(path, source):
    global _session_replay
    import pickle
    import types

    for names, src in _session_definitions(source):
        # A definition replaces earlier ones of the same names (the last `def f` wins).
        _session_replay = [e for e in _session_replay if e[1] != src and not set(e[0]) <= set(names)]
        _session_replay.append([names, src])
    defined = {n for names, _ in _session_replay for n in names}
    code_like = (types.ModuleType, types.FunctionType, type)
    values, saved, dropped, total = {}, [], [], 0
    for name, value in list(_ns.items()):
        if name.startswith("_"):
            continue
        if name in defined and isinstance(value, code_like):
            saved.append(name)
            continue
        try:
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as e:
            dropped.append({"name": name, "reason": f"not picklable: {type(e).__name__}: {e}"})
            continue
        if len(blob) > _SESSION_MAX_VALUE or total + len(blob) > _SESSION_MAX_TOTAL:
            dropped.append({"name": name, "reason": f"too large to save ({len(blob)} bytes pickled)"})
            continue
        total += len(blob)
        values[name] = blob
        saved.append(name)
    # Names a definition bound that no longer exist (`del f`) are not replayed again.
    _session_replay = [e for e in _session_replay if any(n in _ns or n == "*" for n in e[0])]
    state = {"version": _SESSION_VERSION, "replay": _session_replay, "values": values, "dropped": dropped}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(tmp, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as e:
        _warn(f"[hutch] cannot save the session state: {e}")
        return
    _send({"type": "session", "op": "persist", "saved": sorted(saved), "dropped": dropped})


def _run_cell(msg):
    global _count, _running, _in_user, _deferred_int
    _count += 1
    _apply_env(msg.get("env"))
    _apply_cwd(msg.get("cwd"))
    if msg.get("clear_cache"):
        _compiled.clear()
    source = msg.get("code") or ""
    session = (msg.get("session") or {}).get("path")
    if session and session != _session_loaded:
        try:
            _in_user = True
            _session_restore(session)
        except BaseException as e:
            _warn(f"[hutch] cannot restore the session: {type(e).__name__}: {e}")
        finally:
            _in_user = False
    status, exit_code, hit = "ok", 0, False
    _running = True
    try:
        os.write(_wake_w, b".")
    except OSError:
        pass
    try:
        try:
            _in_user = True
            body, last, hit = _compile(source)
            if body is not None:
                _run(body)
            if last is not None:
                result = _run(last)
                if result is not None:
                    _ns["_"] = result
                    data, md = _bundle(result)
                    msg_out = {"type": "result", "data": data, "execution_count": _count}
                    if md:
                        msg_out["metadata"] = md
                    _send(msg_out)
            _flush_figures()
        finally:
            _in_user = False
            _deferred_int = False
    except KeyboardInterrupt as e:
        status, exit_code = "interrupted", 130
        _report(e)
    except SystemExit as e:
        code = e.code
        if code is None or code == 0:
            pass
        elif isinstance(code, int):
            status, exit_code = "exit", code
        else:
            status, exit_code = "exit", 1
            _warn(str(code))
    except BaseException as e:
        status, exit_code = "error", 1
        _report(e)
    if status != "ok":
        try:
            _flush_figures()
        except BaseException:
            pass
    elif session:
        try:
            _session_persist(session, source)
        except BaseException as e:
            _warn(f"[hutch] cannot save the session state: {type(e).__name__}: {e}")
    _running = False
    _flush()
    _send(
        {
            "type": "done",
            "status": status,
            "exit_code": exit_code,
            "execution_count": _count,
            "compiled": len(_compiled),
            "compile_hit": hit,
        }
    )


def _on_sigint(_signum, _frame):
    global _deferred_int
    if not _in_user:
        return
    if _crit:
        _deferred_int = True
        return
    raise KeyboardInterrupt


def _read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(_CMD_FD, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _main():
    global _ns
    for fd in (_CMD_FD, _EVT_FD, _OUT_FD, _ERR_FD):
        os.set_inheritable(fd, False)
    os.set_blocking(_OUT_FD, False)
    os.set_blocking(_ERR_FD, False)
    main = type(sys)("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    _ns = main.__dict__
    # Started as `python3 -c "...; import python_kernel"`: drop the driver's directory again;
    # the working directory is importable, as in Jupyter.
    here = os.path.dirname(_HERE)
    sys.path[:] = [p for p in sys.path if p != here]
    if not sys.path or sys.path[0] != "":
        sys.path.insert(0, "")
    sys.argv = [""]
    sys.stdout = _Writer(b"o", 1, "<stdout>")
    sys.stderr = _Writer(b"e", 2, "<stderr>")
    builtins.display = display
    builtins.input = _input
    builtins.StdinNotImplementedError = StdinNotImplementedError
    sys.meta_path.insert(0, _Finder())
    if "linecache" in sys.modules:
        _hook_linecache(sys.modules["linecache"])
    if "matplotlib.pyplot" in sys.modules:
        _hook_pyplot(sys.modules["matplotlib.pyplot"])
    _signal.signal(_signal.SIGINT, _on_sigint)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    _thread.start_new_thread(_pump, ())
    _send({"type": "ready", "pid": os.getpid(), "language": "python", "version": sys.version.split()[0]})
    while True:
        header = _read_exact(4)
        if header is None:
            break
        body = _read_exact(int.from_bytes(header, "little"))
        if body is None:
            break
        try:
            msg = _loads(body.decode("utf-8"))
        except Exception as e:
            _warn(f"[hutch] bad command: {e}")
            continue
        if msg.get("type") == "execute":
            try:
                _run_cell(msg)
            except BaseException as e:  # a kernel bug must not leave the agent waiting
                try:
                    _warn(f"[hutch] kernel error: {type(e).__name__}: {e}")
                    _send({"type": "done", "status": "error", "exit_code": 1, "execution_count": _count, "compiled": len(_compiled), "compile_hit": False})
                except BaseException:
                    os._exit(70)
        elif msg.get("type") == "shutdown":
            break
    os._exit(0)


_main()
