"""Several OpenAI-compatible endpoints behind one client: calls spread by load, failing endpoints taken out.

Each :class:`~synalign_kedro.core.llm_server.Endpoint` has its own concurrency (the slots of a
``llama-server``, the ``max_num_seqs`` of a vLLM instance). :meth:`EndpointPool.acquire` blocks until some
healthy endpoint has a free slot and picks the least loaded one (lowest in-flight / concurrency, then fewest recent
failures, then the first listed), so a fast endpoint that frees slots sooner gets more calls. An endpoint that fails
``max_failures`` times in a row (connection refused, timeout, HTTP 5xx, transport garbage) is taken out
for the rest of the run; the call that failed is retried by the client on another endpoint. When every
endpoint is out, :class:`NoEndpointLeftError` ends the run (finished calls stay in the cache).

Hand-written on ``threading.Condition`` (a few dozen lines): the load balancers of httpx / openai spread by
DNS or not at all, and neither knows a per-endpoint concurrency or takes an endpoint out.

**Stopping abandoned work** (:meth:`EndpointPool.abort`): when a run is interrupted or one of its tasks raises,
the client aborts its pool. Every TCP connection the pool's HTTP clients opened is shut down
(``socket.shutdown``: a read blocked in another thread returns at once, which ``close`` alone does not do on
Linux), so in-flight requests fail within milliseconds instead of running to ``llm.timeout``, and the server
sees the client disconnect (llama.cpp's ``llama-server`` then stops generating that answer). Calls not yet
started, retries and backoff sleeps of an aborted pool raise :class:`CallAbandonedError`. The sockets are
found by wrapping the network backend of the httpx client's connection pools (``openai.DefaultHttpxClient``,
so openai's defaults and environment proxies are kept); where that is not possible, abort closes the clients,
and a blocked request then ends at its timeout.
"""

from __future__ import annotations

import logging
import socket
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

from .llm_server import Endpoint

logger = logging.getLogger(__name__)


class NoEndpointLeftError(RuntimeError):
    """Every endpoint failed repeatedly and was taken out."""


class CallAbandonedError(RuntimeError):
    """The pool was aborted (the run was interrupted or failed): this call is not made, retried or awaited."""


class _SocketTracker:
    """The sockets of one HTTP client's connections, to shut them down from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.aborted = False
        self.installed = False

    def install(self, http_client: Any) -> bool:
        """Wrap the network backend of every connection pool of ``http_client`` (an httpx client)."""
        transports = [getattr(http_client, "_transport", None), *getattr(http_client, "_mounts", {}).values()]
        for transport in transports:
            pool = getattr(transport, "_pool", None)
            backend = getattr(pool, "_network_backend", None)
            if backend is not None and not isinstance(backend, _TrackingBackend):
                pool._network_backend = _TrackingBackend(backend, self)
                self.installed = True
        return self.installed

    def track(self, stream: Any) -> Any:
        sock = stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.add(sock)
                aborted = self.aborted
            if aborted:  # connected while the pool was being aborted
                _shut(sock)
        return _TrackedStream(stream, self)

    def abort(self) -> int:
        """Shut down every open connection; returns how many."""
        with self._lock:
            self.aborted = True
            sockets = list(self._sockets)
        return sum(_shut(sock) for sock in sockets)


def _shut(sock: socket.socket) -> bool:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        return False
    return True


class _Tracked:
    """Wraps an httpcore object: what opens a connection hands its socket to a :class:`_SocketTracker`, every
    other attribute is the wrapped object's."""

    def __init__(self, inner: Any, tracker: _SocketTracker) -> None:
        self._inner = inner
        self._tracker = tracker

    def _track(self, opener: str, *args: Any, **kwargs: Any) -> Any:
        return self._tracker.track(getattr(self._inner, opener)(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _TrackingBackend(_Tracked):
    """An httpcore network backend whose new connections are tracked (``sleep`` and the rest delegated)."""

    def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
        return self._track("connect_tcp", *args, **kwargs)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        return self._track("connect_unix_socket", *args, **kwargs)


class _TrackedStream(_Tracked):
    """A network stream whose TLS upgrade (a new socket object) is tracked too (``read``, ``write``, ``close``,
    ``get_extra_info`` delegated)."""

    def start_tls(self, *args: Any, **kwargs: Any) -> Any:
        return self._track("start_tls", *args, **kwargs)


def _open_client(endpoint: Endpoint, timeout: float) -> tuple[openai.OpenAI, _SocketTracker]:
    """The endpoint's openai client (``timeout``: the whole answer of one request) and its socket tracker."""
    http_client = openai.DefaultHttpxClient()
    tracker = _SocketTracker()
    if not tracker.install(http_client):
        logger.debug("httpx connection pools not found: an aborted run closes the client instead")
    client = openai.OpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        timeout=timeout,
        max_retries=0,  # retries are the LLM client's (bounded, with jitter, counted)
        http_client=http_client,
    )
    return client, tracker


@dataclass
class _EndpointState:
    endpoint: Endpoint
    client: openai.OpenAI
    concurrency: int
    in_flight: int = 0
    consecutive_failures: int = 0
    calls: int = 0
    failures: int = 0
    healthy: bool = True
    last_error: str = ""
    sockets: _SocketTracker = field(default_factory=_SocketTracker)


class EndpointPool:
    """Load-spreading, failure-aware choice among endpoints (thread-safe)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        default_concurrency: int,
        timeout: float,
        max_failures: int = 3,
    ) -> None:
        if not endpoints:
            raise ValueError("EndpointPool needs at least one endpoint")
        self.max_failures = max_failures
        self._condition = threading.Condition()
        self._aborted = threading.Event()
        self._states = []
        for endpoint in endpoints:
            client, sockets = _open_client(endpoint, timeout)
            concurrency = max(1, endpoint.max_concurrency or default_concurrency)
            self._states.append(_EndpointState(endpoint, client, concurrency, sockets=sockets))

    @property
    def capacity(self) -> int:
        """Concurrent calls the healthy endpoints accept together."""
        with self._condition:
            return sum(s.concurrency for s in self._states if s.healthy)

    @property
    def endpoints(self) -> list[Endpoint]:
        return [s.endpoint for s in self._states]

    def acquire(self) -> _EndpointState:
        """Block until a healthy endpoint has a free slot; return the least loaded one."""
        with self._condition:
            while True:
                if self._aborted.is_set():
                    raise CallAbandonedError("the LLM run was stopped")
                healthy = [s for s in self._states if s.healthy]
                if not healthy:
                    raise NoEndpointLeftError(self._down_message())
                free = [s for s in healthy if s.in_flight < s.concurrency]
                if free:
                    state = min(free, key=lambda s: (s.in_flight / s.concurrency, s.consecutive_failures))
                    state.in_flight += 1
                    state.calls += 1
                    return state
                self._condition.wait()

    def release(self, state: _EndpointState, error: BaseException | None = None, counts: bool = True) -> None:
        """Free the slot; ``error`` (a transport failure) counts toward taking the endpoint out."""
        with self._condition:
            state.in_flight -= 1
            if error is None:
                state.consecutive_failures = 0
            elif counts and not self._aborted.is_set():  # failures caused by abort() are not the endpoint's
                state.failures += 1
                state.consecutive_failures += 1
                state.last_error = (
                    f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
                )
                healthy = [s for s in self._states if s.healthy]
                # the last healthy endpoint stays: the client's retry budget decides when the run gives up
                if state.healthy and state.consecutive_failures >= self.max_failures and len(healthy) > 1:
                    state.healthy = False
                    left = len(healthy) - 1
                    logger.warning(
                        "LLM endpoint %s failed %d times in a row (%s): taken out, %d endpoint(s) left",
                        state.endpoint.base_url, state.consecutive_failures, state.last_error, left,
                    )  # fmt: skip
            self._condition.notify_all()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def pause(self, seconds: float) -> None:
        """Sleep between retries; :class:`CallAbandonedError` at once when the pool is aborted meanwhile."""
        if self._aborted.wait(seconds):
            raise CallAbandonedError("the LLM run was stopped")

    def abort(self) -> int:
        """Stop every call now: no new call starts, and the requests in flight fail at once (their connections
        are shut down, so the servers see the client disconnect). Returns the connections shut down."""
        with self._condition:
            if self._aborted.is_set():
                return 0
            self._aborted.set()
            self._condition.notify_all()
        shut = sum(state.sockets.abort() for state in self._states)
        for state in self._states:
            try:
                state.client.close()
            except Exception:  # noqa: BLE001 - best effort: the run is being stopped anyway
                logger.debug("closing the client of %s failed", state.endpoint.base_url, exc_info=True)
        return shut

    def report(self) -> list[dict]:
        """Per-endpoint accounting (no API keys)."""
        with self._condition:
            return [
                {
                    "base_url": s.endpoint.base_url,
                    "concurrency": s.concurrency,
                    "calls": s.calls,
                    "failures": s.failures,
                    "healthy": s.healthy,
                }
                for s in self._states
            ]

    def _down_message(self) -> str:
        return "every LLM endpoint was taken out after repeated failures: " + "; ".join(
            f"{s.endpoint.base_url} ({s.last_error})" for s in self._states
        )
