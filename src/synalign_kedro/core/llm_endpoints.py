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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import openai

from .llm_server import Endpoint

logger = logging.getLogger(__name__)


class NoEndpointLeftError(RuntimeError):
    """Every endpoint failed repeatedly and was taken out."""


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
        self._states = [
            _EndpointState(
                endpoint=endpoint,
                client=openai.OpenAI(
                    base_url=endpoint.base_url,
                    api_key=endpoint.api_key,
                    timeout=timeout,
                    max_retries=0,  # retries are the LLM client's (bounded, with jitter, counted)
                ),
                concurrency=max(1, endpoint.max_concurrency or default_concurrency),
            )
            for endpoint in endpoints
        ]

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
            elif counts:
                state.failures += 1
                state.consecutive_failures += 1
                state.last_error = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
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
