"""Lifecycle of the embedded LLM: a llama.cpp OpenAI-compatible server on 127.0.0.1.

All LLM traffic in the project goes through the ``openai`` client against an :class:`Endpoint`. The
embedded model is served by one of two backends (``llm.server.backend``), started here on a free loopback
port, ready-polled on ``/v1/models``, and stopped with its whole process group when the run ends, fails or
is interrupted (the Kedro hook calls :func:`stop_all`; ``atexit`` and a parent-death signal cover the rest):

- ``llama_server`` (default when the binary is there): llama.cpp's own ``llama-server``, built from source
  by ``make llama-server`` into ``.venv/bin``. ``parallel`` slots with continuous batching (the client sends
  that many calls at once), a per-slot context of ``n_ctx``, prompt caching with ``--cache-reuse`` so the
  shared prompt prefix is not recomputed, llama.cpp's JSON-schema grammar for ``response_format``
  (``json_object`` + schema and ``json_schema`` alike), no busy-polling threads (``--poll 0``: on a shared
  CPU the default spin showed as half the time in the kernel), optionally speculative decoding of repeats
  (``speculative: ngram-simple``: where the last 12 tokens occurred before in the context, the 48 that followed
  them there are drafted and checked in one batch; each token is still sampled from the model, so the answers'
  distribution does not change; off by default: no gain was measured, docs/generation.md), and a request that
  the client abandons (timeout, interrupted run) is cancelled when its connection closes; ``--timeout`` bounds a stuck
  connection.
- ``llama_cpp_python``: ``python -m llama_cpp.server`` from llama-cpp-python, one request at a time (its
  endpoints carry ``max_concurrency=1`` so the client does not queue calls that would time out waiting).
- ``auto``: ``llama_server`` when the binary is found, else ``llama_cpp_python`` (with a warning).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .models import DEFAULT_CACHE_DIR, resolve_llm_path, sha256_of

logger = logging.getLogger(__name__)


class LLMServerError(RuntimeError):
    """The embedded server could not be started or did not become ready."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach an OpenAI-compatible chat endpoint.

    ``identity`` names the model behind the endpoint independently of its (ephemeral) URL; it is what the
    LLM call cache keys on, so a cached answer survives a server restart on another port. The API key is
    excluded from ``repr`` so it never lands in a log line.
    """

    base_url: str
    model: str
    identity: str
    api_key: str = field(default="sk-no-key-required", repr=False)
    max_concurrency: int = 0  # calls this endpoint serves at once; 0 = the client's llm.max_concurrency
    server: str = ""  # "llama_server" / "llama_cpp_python" for the embedded servers; "" for a remote endpoint


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _crash_hint(code: int) -> str:
    """What to do when the server died of a signal at start-up (its warm-up is the first inference)."""
    if code != -signal.SIGSEGV:
        return ""
    return (
        ": a segmentation fault. A llama-server built with Intel AMX crashes this way on some CPUs "
        "(ggml-org/llama.cpp#20824); the Makefile builds without it since this was seen: rebuild with "
        "`rm .venv/bin/llama-server && make llama-server`, or set llm.server.backend: llama_cpp_python"
    )


def _new_session() -> None:  # pragma: no cover - runs in the child before exec
    os.setsid()


def _new_session_dying_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """New process group, and ask Linux to SIGTERM the server if its parent dies (even by kill -9).

    Linux ties the parent-death signal to the *thread* that forked, so this is only used when the server
    is started from the main thread (see :meth:`LlamaCppServer.start`).
    """
    os.setsid()
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LlamaCppServer:
    """One ``python -m llama_cpp.server`` process in its own process group."""

    def __init__(
        self,
        model_path: str | Path,
        alias: str,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 180.0,
        n_gpu_layers: int = 0,
        log_path: str | Path | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.alias = alias
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.n_gpu_layers = n_gpu_layers
        self.log_path = Path(log_path) if log_path else Path(tempfile.gettempdir()) / f"llama_server_{os.getpid()}_{alias}.log"
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_gpu_layers", str(self.n_gpu_layers),
        ]  # fmt: skip

    def start(self) -> None:
        if self.running:
            return
        if not self.model_path.is_file():
            raise LLMServerError(f"model file {self.model_path} does not exist")
        self.port = self.port or free_port(self.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child for its lifetime
        logger.info("Starting llama.cpp server for %s on %s (log: %s)", self.alias, self.base_url, self.log_path)
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_new_session_dying_with_parent
            if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
            else _new_session,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            if (code := self.process.poll()) is not None:
                tail = self.log_tail()
                self.process = None
                raise LLMServerError(
                    f"llama.cpp server ({self.command()[0]}) for {self.model_path.name} exited during start-up "
                    f"(code {code}){_crash_hint(code)}; last log lines:\n{tail}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    payload = json.loads(response.read())
                    models = payload.get("data", []) if isinstance(payload, dict) else []
                    if any(self.alias in (m.get("id"), *(m.get("aliases") or ())) for m in models):
                        logger.info("llama.cpp server ready on %s", self.base_url)
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise LLMServerError(
            f"llama.cpp server for {self.model_path.name} did not answer {url} within {self.startup_timeout:.0f} s; "
            f"last log lines:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            pgid = os.getpgid(process.pid)
        except ProcessLookupError:
            pgid = None
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if pgid is not None:
                    os.killpg(pgid, sig)
                else:
                    process.send_signal(sig)
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        logger.info("llama.cpp server %s stopped", self.alias)

    def __enter__(self) -> LlamaCppServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def find_llama_server(binary: str | Path | None = None) -> Path | None:
    """The ``llama-server`` binary: ``binary`` if given, else ``$LLAMA_SERVER_BIN``, the venv's ``bin``
    (where ``make llama-server`` installs it), then ``PATH``. None when there is none."""
    candidates = [binary] if binary else [
        os.environ.get("LLAMA_SERVER_BIN"),
        Path(sys.executable).parent / "llama-server",
        Path(sys.prefix) / "bin" / "llama-server",
        shutil.which("llama-server"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    if binary:
        raise LLMServerError(f"llama-server binary {binary} does not exist or is not executable")
    return None


class LlamaServer(LlamaCppServer):
    """llama.cpp's own ``llama-server`` (parallel slots, continuous batching, prefix cache) in its own
    process group. ``n_ctx`` is the context of one slot; the server gets ``n_ctx * parallel`` in all."""

    def __init__(
        self,
        model_path: str | Path,
        alias: str,
        binary: str | Path,
        parallel: int = 4,
        cache_reuse: int = 256,
        request_timeout: float = 600.0,
        extra_args: list[str] | tuple[str, ...] = (),
        speculative: str = "none",
        **kwargs,
    ) -> None:
        super().__init__(model_path, alias, **kwargs)
        self.binary = Path(binary)
        self.parallel = max(1, int(parallel))
        self.cache_reuse = int(cache_reuse)
        self.request_timeout = request_timeout
        self.extra_args = [str(a) for a in extra_args]
        self.speculative = speculative

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--model", str(self.model_path),
            "--alias", self.alias,
            "--host", self.host,
            "--port", str(self.port),
            "--ctx-size", str(self.n_ctx * self.parallel),
            "--parallel", str(self.parallel),
            "--cont-batching",
            "--cache-reuse", str(self.cache_reuse),
            "--threads", str(self.n_threads),
            "--threads-batch", str(self.n_threads),
            "--poll", "0",
            "--n-gpu-layers", str(self.n_gpu_layers),
            "--timeout", str(int(self.request_timeout)),
            "--no-webui",
            *(["--spec-type", self.speculative] if self.speculative != "none" else []),
            *self.extra_args,
        ]  # fmt: skip


_SERVERS: dict[tuple, LlamaCppServer] = {}
_IDENTITIES: dict[str, str] = {}
_LOCK = threading.Lock()


def model_identity(model_path: Path) -> str:
    """A stable name for a local model file: its name plus the first 16 hex digits of its sha256."""
    key = str(model_path.resolve())
    if key not in _IDENTITIES:
        _IDENTITIES[key] = f"{model_path.name}@{sha256_of(model_path)[:16]}"
    return _IDENTITIES[key]


BACKENDS = ("auto", "llama_server", "llama_cpp_python")


def resolve_backend(backend: str = "auto", binary: str | Path | None = None) -> tuple[str, Path | None]:
    """(backend, llama-server binary or None) for ``llm.server.backend``; see the module docstring."""
    if backend not in BACKENDS:
        raise LLMServerError(f"llm.server.backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "llama_cpp_python":
        return backend, None
    found = find_llama_server(binary)
    if found is not None:
        return "llama_server", found
    if backend == "llama_server":
        raise LLMServerError(
            "llm.server.backend is llama_server but no llama-server binary was found (looked at $LLAMA_SERVER_BIN, "
            f"{Path(sys.executable).parent / 'llama-server'} and PATH): build it with `make llama-server` "
            "(about 11 minutes on 2 cores, once), set llm.server.binary, or use backend llama_cpp_python"
        )
    logger.warning(
        "No llama-server binary (build it with `make llama-server`): serving the embedded model with "
        "llama-cpp-python's server, one request at a time"
    )
    return "llama_cpp_python", None


def embedded_endpoint(
    model: str,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    n_gpu_layers: int = 0,
    startup_timeout: float = 180.0,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    backend: str = "auto",
    parallel: int = 1,
    binary: str | Path | None = None,
    cache_reuse: int = 256,
    request_timeout: float = 600.0,
    extra_args: list[str] | tuple[str, ...] = (),
    speculative: str = "none",
) -> Endpoint:
    """Start (or reuse) the process-wide embedded server for ``model`` and return its endpoint.

    ``model`` is an embedded model key (see :data:`synalign_kedro.core.models.EMBEDDED_LLMS`) or a path to
    a GGUF file. ``backend`` and the ``llama_server`` options are described in the module docstring; the
    endpoint's ``max_concurrency`` is the number of slots (1 for ``llama_cpp_python``). Servers started here
    are stopped by :func:`stop_all` (the Kedro hook and ``atexit``).
    """
    path = resolve_llm_path(model, cache_dir)
    chosen, found = resolve_backend(backend, binary)
    slots = max(1, int(parallel)) if chosen == "llama_server" else 1
    key = (str(path.resolve()), n_ctx, n_threads, n_gpu_layers, chosen, slots, tuple(extra_args), speculative)
    with _LOCK:
        server = _SERVERS.get(key)
        if server is None or not server.running:
            alias = Path(model).stem if model.endswith(".gguf") else model
            common = {"n_ctx": n_ctx, "n_threads": n_threads, "n_gpu_layers": n_gpu_layers, "startup_timeout": startup_timeout}
            if chosen == "llama_server":
                server = LlamaServer(
                    path, alias, found, parallel=slots, cache_reuse=cache_reuse, request_timeout=request_timeout,
                    extra_args=extra_args, speculative=speculative, **common,
                )  # fmt: skip
            else:
                server = LlamaCppServer(path, alias, **common)
            server.start()
            _SERVERS[key] = server
        return Endpoint(
            base_url=server.base_url, model=server.alias, identity=f"embedded:{model_identity(path)}", max_concurrency=slots,
            server=chosen,
        )


def running_servers() -> list[LlamaCppServer]:
    """The embedded servers this process started and has not stopped."""
    with _LOCK:
        return list(_SERVERS.values())


# llama-server's log: "<minutes>.<seconds>.<milliseconds>.<microseconds> I slot launch_slot_: id  3 | task 1 | ..."
# at the start of a request, "... I slot      release: id  1 | ..." at its end
_SLOT_EVENT = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+) I slot +(launch_slot_|release):", re.MULTILINE)


def slot_occupancy(log_text: str) -> dict[int, float]:
    """Seconds during which k of ``llama-server``'s slots were busy (k -> seconds), read from its log.

    From the first request's start to the last one's end; 0 is the time between requests. With 4 slots on a
    CPU, what the slots do not overlap (a stage's last answers, a lone re-ask) runs at one sequence per forward
    pass: this says how much of a run that is. Empty when the log has no slot lines (llama-cpp-python's server
    writes none)."""
    events = sorted(
        (
            int(minutes) * 60 + int(seconds) + int(milliseconds) / 1e3 + int(microseconds) / 1e6,
            1 if kind == "launch_slot_" else -1,
        )
        for minutes, seconds, milliseconds, microseconds, kind in _SLOT_EVENT.findall(log_text)
    )
    occupancy: dict[int, float] = {}
    busy, previous = 0, events[0][0] if events else 0.0
    for when, change in events:
        occupancy[busy] = occupancy.get(busy, 0.0) + when - previous
        busy, previous = max(0, busy + change), when
    return {k: round(v, 3) for k, v in sorted(occupancy.items()) if v > 0}


def stop_all() -> None:
    """Stop every embedded server this process started."""
    with _LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.stop()


atexit.register(stop_all)


_API_KEY: str | None = None


def register_api_key(api_key: str | None) -> None:
    """Remember the API key for remote endpoints (read from ``credentials.yml`` by the Kedro hook)."""
    global _API_KEY
    _API_KEY = api_key


def remote_endpoint(
    base_url: str,
    model: str,
    api_key_env: str | None = "OPENAI_API_KEY",
    max_concurrency: int = 0,
    identity: str | None = None,
) -> Endpoint:
    """An endpoint for OpenAI, vLLM, Ollama, ...: the key comes from credentials, else from ``api_key_env``."""
    api_key = _API_KEY or (os.environ.get(api_key_env) if api_key_env else None) or "sk-no-key-required"
    return Endpoint(
        base_url=base_url.rstrip("/"),
        model=model,
        identity=identity or f"remote:{base_url.rstrip('/')}#{model}",
        api_key=api_key,
        max_concurrency=max_concurrency,
    )


def resolve_endpoints(llm: dict) -> list[Endpoint]:
    """Every endpoint the ``llm`` parameters name (see :func:`resolve_endpoint`), as a list."""
    endpoint = resolve_endpoint(llm)
    return endpoint if isinstance(endpoint, list) else [endpoint]


def resolve_endpoint(llm: dict) -> Endpoint | list[Endpoint]:
    """Endpoint(s) from the ``llm`` parameters.

    - ``endpoints`` (a list of ``{base_url, max_concurrency, model?, api_key_env?}``): a list of remote
      endpoints serving the same model; they share one cache identity (``cache_identity``), not their URLs;
    - else ``base_url``: one remote endpoint;
    - else the embedded server for ``llm.model`` (``llm.server``: backend, parallel slots, ...), whose
      slots default to ``llm.max_concurrency``.
    """
    if llm.get("endpoints"):
        from .llm_client import cache_identity  # the one place the identity of a parameter block is defined

        identity = cache_identity(llm)
        return [
            remote_endpoint(
                entry["base_url"],
                entry.get("model") or llm["model"],
                entry.get("api_key_env", llm.get("api_key_env", "OPENAI_API_KEY")),
                max_concurrency=int(entry.get("max_concurrency") or llm.get("max_concurrency") or 1),
                identity=identity,
            )
            for entry in llm["endpoints"]
        ]
    if llm.get("base_url"):
        return remote_endpoint(llm["base_url"], llm["model"], llm.get("api_key_env", "OPENAI_API_KEY"))
    server = llm.get("server") or {}
    return embedded_endpoint(
        llm["model"],
        n_ctx=int(server.get("n_ctx", 4096)),
        n_threads=server.get("n_threads"),
        n_gpu_layers=int(server.get("n_gpu_layers", 0)),
        startup_timeout=float(server.get("startup_timeout", 180)),
        backend=str(server.get("backend", "auto")),
        parallel=int(server.get("parallel") or llm.get("max_concurrency") or 1),
        binary=server.get("binary"),
        cache_reuse=int(server.get("cache_reuse", 256)),
        request_timeout=float(server.get("request_timeout") or llm.get("timeout") or 600),
        extra_args=tuple(server.get("extra_args") or ()),
        speculative=str(server.get("speculative", "none")),
    )
