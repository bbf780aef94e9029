"""One LLM client for every OpenAI-compatible endpoint (embedded llama.cpp, OpenAI, vLLM, Ollama).

What it adds to the ``openai`` package:

- **Structured output** (``structured_output``): ``json_schema`` (OpenAI's ``response_format``; vLLM and
  Ollama accept it too), ``json_object`` with the schema beside it (llama.cpp's grammar-constrained mode;
  llama.cpp refuses ``json_schema`` with HTTP 500), ``plain`` (no constraint, tolerant extraction by
  :func:`~synalign_kedro.core.json_extract.extract_json`), or ``auto`` (``json_object`` for the embedded
  server, ``json_schema`` for a remote one).
- **Re-asks** (the instructor pattern): an answer that is not JSON, has the wrong shape, is empty or fails
  the task's validator is sent back with the validation error, at most ``max_retries`` times; then the
  task is recorded as failed and the run goes on.
- **Every HTTP answer is checked** before use (:func:`~synalign_kedro.core.llm_response.parse_chat_completion`): a body that is not an
  OpenAI chat completion (HTTP 200 with ``{"choices": []}``, a text/plain body, a JSON content type with a
  non-JSON body, JSON without ``choices``) is a transport error, never an answer.
- **Transport retries**: connection errors, timeouts, HTTP 429 and 5xx and such garbage are retried with
  exponential backoff and full jitter (``tenacity``), bounded by ``transport_retries`` attempts and
  ``transport_budget_s`` seconds per call; past that :class:`LLMUnavailableError` ends the run with a
  clear message naming the endpoint, the HTTP status and the first bytes of the body. Everything finished
  so far is in the cache, so a re-run resumes.
- **Several endpoints** (``llm.endpoints``, :mod:`~synalign_kedro.core.llm_endpoints`): calls spread over
  them by load, each endpoint with its own concurrency; one that fails repeatedly is taken out and its
  calls go to the others.
- **Cache** (:mod:`~synalign_kedro.core.llm_cache`): every completed call is committed under the hash of
  the model identity (never a URL), messages and sampling settings, with whether it passed validation.
  Tasks are first replayed from the cache in the calling thread; the endpoint (which may start the
  embedded server) is only resolved, from that same thread, when some call is not cached. With
  ``retry_failed: true`` a task whose cached answers all failed validation is asked again (fresh seeds) and
  its new answers replace the failed ones.
- **Accounting**: calls, cache hits, re-asks, transport retries, failures, tokens and wall time.
- **Progress** (``show_progress``): one line per :meth:`LLMClient.run` (``<method>:<stage>``): calls done /
  total, the items kept / requested (samples, values: what each task asks, see :attr:`ChatTask.items`),
  completion tokens/s (wall clock, all slots together) and an ETA. A ``tqdm`` bar on a terminal; when stderr
  is not a terminal (``kedro run`` piped to a file, CI), a plain INFO log line at every 10 % and at least every
  30 s instead of carriage-return redraws.
- **Stopping** (:meth:`~synalign_kedro.core.llm_endpoints.EndpointPool.abort`): when a run is interrupted
  (KeyboardInterrupt, or any exception raised in the calling thread) or one task raises, the calls not started
  are cancelled and the requests in flight are abandoned at once (their connections shut down, so the server
  stops generating); ``run`` re-raises within moments instead of waiting up to ``llm.timeout`` for them.
  Calls finished before are in the cache, so a re-run asks only the rest.

API keys live only inside :class:`~synalign_kedro.core.llm_server.Endpoint` (excluded from its repr) and
the ``openai`` client; nothing here logs or returns them.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import openai
from pydantic import ValidationError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from tqdm.auto import tqdm

from .json_extract import JSONExtractionError, extract_json
from .llm_cache import CachedCall, LLMCallCache, call_key
from .llm_endpoints import CallAbandonedError, EndpointPool, NoEndpointLeftError
from .llm_response import ChatAnswer, MalformedResponseError, parse_chat_completion, read_chat_stream
from .llm_server import Endpoint
from .llm_settings import EndpointSettings, LLMSettings, ServerSettings
from .llm_tracing import trace_llm_call

__all__ = [  # settings and the response check live in their own modules; imported from here as before
    "ChatAnswer",
    "ChatTask",
    "EndpointSettings",
    "LLMClient",
    "LLMSettings",
    "LLMUnavailableError",
    "LLMUsage",
    "MalformedResponseError",
    "ServerSettings",
    "TaskResult",
    "cache_identity",
    "open_cache",
    "parse_chat_completion",
]

logger = logging.getLogger(__name__)

DEFAULT_REASK = (
    "An earlier answer to this request could not be used: {error}\n"
    "Answer with only the JSON requested, following every instruction above."
)


class LLMUnavailableError(RuntimeError):
    """The endpoint stayed unreachable (or kept answering 429/5xx) past the retry budget, or refused us."""


class _NeedsNetwork(Exception):
    """Raised in the cache-only pass when a call is not cached."""


@dataclass
class ChatTask:
    """One logical request: messages, the JSON schema of the answer, and a validator.

    ``validate`` takes the decoded JSON and returns the task's value, or raises ``ValueError`` /
    ``pydantic.ValidationError`` with a message that is sent back to the model in a re-ask.
    ``seed_offset`` makes otherwise identical prompts distinct calls (distinct seeds, distinct cache keys).
    ``items``: how many items (samples, values) the task asks for, for the progress line's "kept k/n"; by
    default read from ``json_schema`` (the ``maxItems`` of its one array property), else one answer per task.
    A validated answer keeps the length of its value when that is a list.
    ``stop_check(partial answer text) -> str`` names a rejection that is certain before the answer ends (e.g. a
    repeated sample, :func:`~synalign_kedro.core.generation.answers.sample_stop_check`), else "": a streamed
    answer is stopped there (``llm.stop_failing_answers``), and it is the error of an answer whose JSON is cut off.
    """

    task_id: str
    messages: list[dict[str, str]]
    schema_name: str
    json_schema: dict | None
    validate: Callable[[Any], Any]
    seed_offset: int = 0
    items: int | None = None
    stop_check: Callable[[str], str] | None = None


@dataclass
class TaskResult:
    task_id: str
    ok: bool
    value: Any = None
    raw_responses: list[str] = field(default_factory=list)
    error: str = ""
    # tokens of every answer this task took (re-asks included), counted whether the answers came from the
    # network or the cache: a resumed run sees the same costs (token budgets, core/generation/methods/feedback.py)
    tokens: int = 0


# run(then=...): (index of the task, its result, its usage) -> the tasks that follow from it
FollowUps = Callable[[int, "TaskResult", "LLMUsage"], list[ChatTask]]

ANSWER_TOKEN_KEYS = ("prompt_tokens", "completion_tokens", "cached_prompt_tokens", "cached_completion_tokens")


def answer_tokens(usage: Mapping[str, Any]) -> int:
    """The tokens an :class:`LLMUsage` (or its usage report, a dict) counts for its answers, network or cache:
    what a token budget or tokens-per-sample figure charges, the same on a resumed run."""
    return int(sum(usage[key] for key in ANSWER_TOKEN_KEYS))


@dataclass
class LLMUsage:
    """Accounting of one batch of tasks (one method)."""

    tasks: int = 0
    calls: int = 0
    cache_hits: int = 0
    reasks: int = 0
    transport_retries: int = 0
    failures: int = 0
    refreshed: int = 0  # calls made again for answers that had failed validation (retry_failed)
    truncated: int = 0  # answers (cached or not) that used all of llm.max_tokens: cut off, usually invalid JSON
    stopped: int = 0  # answers stopped while streaming, once certain to fail (llm.stop_failing_answers)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    # of prompt_tokens (network calls), those the server took from its prompt cache instead of evaluating them
    # (usage.prompt_tokens_details.cached_tokens; 0 where the server does not report it)
    server_cached_prompt_tokens: int = 0
    call_seconds: float = 0.0
    wall_seconds: float = 0.0

    def add(self, other: LLMUsage) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    @property
    def answer_tokens(self) -> int:
        """Prompt and completion tokens of every answer, whether it came from the network or the cache."""
        return answer_tokens(asdict(self))

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.call_seconds if self.call_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        out = asdict(self)
        out["completion_tokens_per_second"] = round(self.tokens_per_second, 3)
        return out


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, openai.APIConnectionError | openai.APITimeoutError | MalformedResponseError):
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code == 429 or error.status_code >= 500
    return False


class LLMClient:
    """Runs :class:`ChatTask` lists against one or several endpoints, through the cache.

    ``identity`` names the model behind the endpoint(s) for the cache (see :func:`cache_identity`);
    ``endpoint_factory`` returns one :class:`Endpoint` or a list of them; it is called at most once, from
    the thread that calls :meth:`run`, and only when a call is not cached. At most the endpoints' combined
    concurrency (each endpoint's ``max_concurrency``, else ``llm.max_concurrency``) calls run at once.
    """

    # a failed answer asked again under retry_failed gets seed + this * (attempt - 1): small models repeat
    # their answer for the same seed
    REFRESH_SEED_STRIDE = 7_919
    # after an abort, how long run() waits for the abandoned calls' threads (their connections are shut down,
    # so they end at once; an answer that had just arrived is still validated and cached meanwhile)
    ABANDON_GRACE_S = 5.0

    def __init__(
        self,
        settings: LLMSettings,
        identity: str,
        endpoint_factory: Callable[[], Endpoint | list[Endpoint]],
        cache: LLMCallCache,
        reask_template: str = DEFAULT_REASK,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self._trace_name = "llm"  # set by run(): "<method>:<stage>", the traces' name
        self._endpoint_factory = endpoint_factory
        self._endpoint: Endpoint | None = None
        self._endpoints: list[Endpoint] | None = None
        self._pool: EndpointPool | None = None
        self._local = threading.local()  # .pool: the pool of the run a thread works for
        self.cache = cache
        self.reask_template = reask_template
        self.mode = settings.resolved_structured_output()
        self._stats_lock = threading.Lock()

    # ----------------------------------------------------------------- requests
    def _response_format(self, task: ChatTask) -> dict | None:
        if task.json_schema is None or self.mode == "plain":
            return None
        if self.mode == "json_object":
            return {"type": "json_object", "schema": task.json_schema}
        return {"type": "json_schema", "json_schema": {"name": task.schema_name, "schema": task.json_schema}}

    def _sampling(self, task: ChatTask) -> dict:
        sampling = {
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "seed": self.settings.seed + task.seed_offset,
        }
        if self.settings.top_p is not None:
            sampling["top_p"] = self.settings.top_p
        response_format = self._response_format(task)
        if response_format is not None:
            sampling["response_format"] = response_format
        return sampling

    def _ensure_endpoint(self) -> None:
        if self._pool is not None and not self._pool.aborted:
            return
        if self._endpoints is None:
            resolved = self._endpoint_factory()
            endpoints = list(resolved) if isinstance(resolved, list | tuple) else [resolved]
            for endpoint in endpoints:
                if endpoint.identity != self.identity:
                    logger.warning(
                        "Endpoint identity %s differs from the cache identity %s",
                        endpoint.identity,
                        self.identity,
                    )
            self._endpoints = endpoints
            self._endpoint = endpoints[0]
        self._pool = EndpointPool(  # a fresh one after an aborted run; the factory is called once
            self._endpoints,
            default_concurrency=self.settings.max_concurrency,
            timeout=self.settings.timeout,
            max_failures=self.settings.endpoint_max_failures,
        )

    @property
    def endpoints_report(self) -> list[dict]:
        """Calls and failures per endpoint (empty when every call came from the cache)."""
        return self._pool.report() if self._pool is not None else []

    def _streams(self, endpoint: Endpoint) -> bool:
        """Whether answers to ``endpoint`` are streamed so that one certain to fail can be stopped
        (``llm.stop_failing_answers``; ``auto``: the embedded llama-server, whose per-token timings give a
        stopped answer's exact token counts)."""
        setting = self.settings.stop_failing_answers
        return endpoint.server == "llama_server" if setting == "auto" else bool(setting)

    def _request(
        self, state, messages: list[dict], sampling: dict, stop_check: Callable[[str], str] | None = None
    ) -> ChatAnswer:
        extra = {key: sampling[key] for key in ("response_format", "top_p") if key in sampling}
        common = {
            "model": state.endpoint.model,
            "messages": messages,
            "temperature": sampling["temperature"],
            "max_tokens": sampling["max_tokens"],
            "seed": sampling["seed"],
            **extra,
        }
        # without a schema the grammar does not bound the number of items, so no partial answer is certain to fail
        if stop_check is None or "response_format" not in sampling or not self._streams(state.endpoint):
            raw = state.client.chat.completions.with_raw_response.create(**common)
            return parse_chat_completion(raw.http_response, state.endpoint.base_url)
        raw = state.client.chat.completions.with_raw_response.create(
            **common,
            stream=True,
            stream_options={"include_usage": True},
            # llama-server: token counts in every event, so a stopped answer's are exact
            extra_body={"timings_per_token": True} if state.endpoint.server == "llama_server" else None,
        )
        return read_chat_stream(
            raw.http_response,
            state.endpoint.base_url,
            stop_check,
            deadline=time.monotonic() + self.settings.timeout,
        )

    def _network_call(
        self,
        messages: list[dict],
        sampling: dict,
        usage: LLMUsage,
        stop_check: Callable[[str], str] | None = None,
    ) -> CachedCall:
        pool: EndpointPool | None = getattr(self._local, "pool", None) or self._pool
        assert pool is not None
        if pool.aborted:
            raise CallAbandonedError("the LLM run was stopped")
        settings = self.settings
        last_url: list[str] = [self._endpoint.base_url if self._endpoint else "?"]

        def count_retry(state) -> None:
            usage.transport_retries += 1
            logger.warning(
                "LLM call to %s failed (%s); retry %d in %.1f s",
                last_url[0],
                _describe(state.outcome.exception()),
                state.attempt_number,
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = Retrying(
            stop=stop_after_attempt(settings.transport_retries)
            | stop_after_delay(settings.transport_budget_s),
            wait=wait_random_exponential(multiplier=settings.backoff_initial_s, max=settings.backoff_max_s),
            retry=retry_if_exception(lambda error: _is_transient(error) and not pool.aborted),
            before_sleep=count_retry,
            sleep=pool.pause,  # ends at once when the run is stopped
            reraise=True,
        )
        started = time.perf_counter()
        try:
            for attempt in retrying:
                with attempt:
                    endpoint = pool.acquire()
                    last_url[0] = endpoint.endpoint.base_url
                    try:
                        answer = self._request(endpoint, messages, sampling, stop_check)
                    except BaseException as error:
                        pool.release(endpoint, error, counts=_is_transient(error))
                        raise
                    pool.release(endpoint)
        except CallAbandonedError:
            raise
        except RetryError as error:  # pragma: no cover - reraise=True makes tenacity raise the last error
            raise LLMUnavailableError(str(error)) from error
        except NoEndpointLeftError as error:
            raise LLMUnavailableError(
                f"{error}. {len(self.cache)} finished calls are kept in {self.cache.path}; re-run to resume."
            ) from error
        except Exception as error:
            if pool.aborted:  # the request failed because the run was stopped
                raise CallAbandonedError("the LLM run was stopped") from error
            if _is_transient(error):
                hint = (
                    f" Requests took longer than llm.timeout={settings.timeout:.0f} s: raise it, or lower "
                    "llm.max_tokens (the embedded llama-server stops an answer whose request was abandoned)."
                    if isinstance(error, openai.APITimeoutError)
                    else ""
                )
                raise LLMUnavailableError(
                    f"LLM endpoint {last_url[0]} ({self.identity}) kept failing ({_describe(error)}) after "
                    f"{settings.transport_retries} attempts / {settings.transport_budget_s:.0f} s of retries.{hint} "
                    f"{len(self.cache)} finished calls are kept in {self.cache.path}; re-run to resume."
                ) from error
            raise
        usage.server_cached_prompt_tokens += answer.server_cached_prompt_tokens
        usage.stopped += int(bool(answer.stopped))
        return CachedCall(
            text=answer.content,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            seconds=time.perf_counter() - started,
        )

    def _answer(
        self,
        task: ChatTask,
        messages: list[dict],
        sampling: dict,
        usage: LLMUsage,
        network: bool,
        refresh: bool,
    ) -> tuple[str, Any, str]:
        """One answer (cached or asked) and its validation: (text, value or None, error or "").

        ``refresh``: a cached answer that failed validation is asked again (new seed) and replaced.
        """
        key = call_key(self.identity, messages, sampling)
        cached = self.cache.get(key)
        if cached is not None:
            value, error = _validate(task, cached.text)
            if not (refresh and error):
                usage.cache_hits += 1
                usage.truncated += int(cached.completion_tokens >= sampling["max_tokens"])
                usage.cached_prompt_tokens += cached.prompt_tokens
                usage.cached_completion_tokens += cached.completion_tokens
                if cached.valid is None:  # stored before validity was recorded
                    self.cache.mark(key, not error)
                self._trace(task, messages, sampling, cached, error, cache_hit=True)
                return cached.text, value, error
        if not network:
            raise _NeedsNetwork
        attempts = cached.attempts + 1 if cached is not None else 1
        asked = (
            sampling
            if cached is None
            else {**sampling, "seed": sampling["seed"] + self.REFRESH_SEED_STRIDE * (attempts - 1)}
        )
        call = self._network_call(messages, asked, usage, task.stop_check)
        value, error = _validate(task, call.text)
        # stored under the key of the logical call (the original seed), so later runs replay the new answer
        self.cache.put(
            key,
            self.identity,
            {"messages": messages, "sampling": asked},
            replace(call, valid=not error, attempts=attempts),
        )
        usage.calls += 1
        usage.truncated += int(call.completion_tokens >= asked["max_tokens"])
        usage.refreshed += int(cached is not None)
        usage.prompt_tokens += call.prompt_tokens
        usage.completion_tokens += call.completion_tokens
        usage.call_seconds += call.seconds
        self._trace(task, messages, asked, call, error, cache_hit=False)
        return call.text, value, error

    def _trace(self, task, messages, sampling, call: CachedCall, error: str, cache_hit: bool) -> None:
        """One MLflow trace per completed call (core.llm_tracing: never raises, no-op without an active run)."""
        trace_llm_call(
            name=self._trace_name,
            messages=messages,
            answer=call.text,
            prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens,
            latency_s=0.0 if cache_hit else call.seconds,
            cache_hit=cache_hit,
            validation="invalid" if error else "valid",
            model=self.identity,
            sampling=sampling,
            call_id=task.task_id,
            sample_share=self.settings.trace_sample_share,
        )

    def _attempt_task(self, task: ChatTask, network: bool, refresh: bool) -> tuple[TaskResult, LLMUsage]:
        usage = LLMUsage(tasks=1)
        sampling = self._sampling(task)
        messages = [dict(m) for m in task.messages]
        raws: list[str] = []
        error = ""
        for attempt in range(self.settings.max_retries + 1):
            if attempt:  # a fresh seed too, or the same prompt would give the same answer
                usage.reasks += 1
                sampling = {**sampling, "seed": self.settings.seed + task.seed_offset + 1_000_003 * attempt}
            try:
                text, value, error = self._answer(task, messages, sampling, usage, network, refresh)
            # e.g. the prompt exceeds the context: not retryable
            except openai.BadRequestError as bad_request:
                error = f"request refused: {_describe(bad_request)}"
                break
            raws.append(text)
            if not error:
                return TaskResult(task.task_id, True, value, raws), usage
            messages = self._reask_messages(task, messages, text, error)
        usage.failures += 1
        logger.info("Task %s failed after %d answer(s): %s", task.task_id, len(raws), error)
        return TaskResult(task.task_id, False, None, raws, error), usage

    def _reask_messages(self, task: ChatTask, messages: list[dict], answer: str, error: str) -> list[dict]:
        """The messages of a re-ask after ``answer`` (to ``messages``) failed with ``error``.

        By default the request is asked afresh, its last user message followed by the error: measured on the
        embedded 1.5B model, a re-ask that showed the rejected answer got that same answer back, verbatim: the
        benchmark runs in docs/results made 122 such re-asks and ended with 121 failed tasks (docs/generation.md,
        "Re-asks"). The prefix before the note is the original prompt's, so the server's prompt cache still
        serves it.
        ``llm.reask_shows_answer`` continues the conversation instead (the rejected answer, then the error as
        the next user turn), for models that can mend an answer they are shown."""
        note = self.reask_template.format(error=error)
        if self.settings.reask_shows_answer:
            return messages + [{"role": "assistant", "content": answer[:4000]}, {"role": "user", "content": note}]
        original = [dict(m) for m in task.messages]  # a later re-ask carries only the latest error
        last = original[-1]
        return original[:-1] + [{**last, "content": f"{last['content'].rstrip()}\n\n{note}"}]

    def _run_task(self, task: ChatTask, network: bool) -> tuple[TaskResult, LLMUsage]:
        result, usage = self._attempt_task(task, network, refresh=False)
        if not (result.ok or not self.settings.retry_failed or usage.calls):
            # every answer came from the cache and the task failed: ask again (retry_failed)
            if not network:
                raise _NeedsNetwork
            result, usage = self._attempt_task(task, network, refresh=True)
        result.tokens = usage.answer_tokens
        return result, usage

    # ----------------------------------------------------------------- batch
    def run(
        self, tasks: list[ChatTask], description: str = "llm", then: FollowUps | None = None
    ) -> tuple[list[TaskResult], LLMUsage]:
        """Run ``tasks`` (results in task order): cached ones replayed, the rest sent concurrently.

        ``then(index, result, usage)`` is called (in this thread) as each task's result comes in, with that
        task's own usage, and returns the tasks that follow from it (e.g. the samples calls of a summary): they
        join this run at once, so a second stage starts on the slots that the first stage's last answers leave
        idle instead of waiting for the slowest of them. Their results follow ``tasks`` in the order they were
        added (which varies with concurrency: key them by ``task_id``); ``then`` is called for them too.
        """
        started = time.perf_counter()
        self._trace_name = description  # "<method>:<stage>", the traces' name
        tasks = list(tasks)  # follow-ups are appended
        total = LLMUsage()
        results: dict[int, TaskResult] = {}
        pending: list[int] = []
        index = 0
        while index < len(tasks):  # pass 1: cache only, in this thread (a cached answer's follow-ups too)
            try:
                result, usage = self._run_task(tasks[index], network=False)
            except _NeedsNetwork:
                pending.append(index)
            else:
                results[index] = result
                total.add(usage)
                if then is not None:
                    tasks.extend(then(index, result, usage))
            index += 1
        progress = _Progress(description, tasks, results, total, enabled=self.settings.show_progress)
        try:
            if pending:
                self._ensure_endpoint()  # may start the embedded server: this thread only
                progress.start()
                self._run_pending(tasks, pending, results, total, progress, then)
        finally:
            progress.close()
            total.wall_seconds += time.perf_counter() - started
        return [results[i] for i in range(len(tasks))], total

    def _run_pending(
        self, tasks, pending, results, total: LLMUsage, progress: _Progress, then: FollowUps | None
    ) -> None:
        pool = self._pool
        assert pool is not None

        def work(index: int):
            self._local.pool = pool  # this run's pool, even if a later run gets a fresh one
            return index, *self._run_task(tasks[index], network=True)

        def record(index: int, result: TaskResult, usage: LLMUsage) -> list[int]:
            """Keep a result; the indices of the tasks that follow from it (appended to ``tasks``)."""
            results[index] = result
            with self._stats_lock:
                total.add(usage)
            progress.update(tasks[index], result)
            follow_ups = then(index, result, usage) if then is not None else []
            for task in follow_ups:
                progress.expect(task)
            tasks.extend(follow_ups)
            return list(range(len(tasks) - len(follow_ups), len(tasks)))

        # with follow-ups, a few first tasks can grow into many: as many threads as the endpoints have slots
        workers = pool.capacity if then is not None else min(pool.capacity, len(pending))
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") if workers > 1 else None
        futures: set = set()
        try:
            if executor is None:
                queue = list(pending)
                while queue:
                    queue += record(*work(queue.pop(0)))
                return
            # the pool hands out endpoint slots; the threads only need to keep every slot busy
            futures = {executor.submit(work, index) for index in pending}
            while futures:
                # wakes every second: an interrupt of this thread is seen, the log line stays current
                done, futures = wait(futures, timeout=1.0, return_when=FIRST_COMPLETED)
                failed = [future for future in done if future.exception() is not None]
                for future in done:
                    if future.exception() is None:
                        futures |= {executor.submit(work, index) for index in record(*future.result())}
                if failed:
                    raise failed[0].exception()
                progress.tick()
        except BaseException as error:
            self._abandon(pool, executor, futures, results, error)
            raise
        finally:
            self._local.pool = None
        executor.shutdown(wait=True)

    def _abandon(
        self, pool: EndpointPool, executor, futures: set, results: dict, error: BaseException
    ) -> None:
        """Stop a run that was interrupted or failed: calls not started are cancelled, the ones in flight
        abandoned (their connections shut down, so the server stops generating). Finished calls are cached."""
        running = {future for future in futures if not future.cancel() and not future.done()}
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        shut = pool.abort()
        still = wait(running, timeout=self.ABANDON_GRACE_S).not_done if running else set()
        logger.warning(
            "LLM run %s stopped (%s): %d task(s) done, %d call(s) in flight abandoned (%d connection(s) closed)%s; "
            "finished calls are kept in %s, a re-run asks only the rest",
            self._trace_name, type(error).__name__, len(results), len(running), shut,
            f", {len(still)} still winding down" if still else "", self.cache.path,
        )  # fmt: skip


class _Progress:
    """The progress line of one :meth:`LLMClient.run`: calls done / total, items kept / requested, completion
    tokens/s and an ETA. A ``tqdm`` bar on a terminal, else a log line at every 10 % and every ``LOG_EVERY_S``."""

    LOG_EVERY_S = 30.0
    BAR_FORMAT = (
        "{desc}: {percentage:3.0f}%|{bar:12}| {n_fmt}/{total_fmt} calls{postfix} [{elapsed}, ETA {remaining}]"
    )

    def __init__(
        self,
        description: str,
        tasks: list[ChatTask],
        done: dict[int, TaskResult],
        usage: LLMUsage,
        enabled: bool,
    ) -> None:
        self.description = description
        self.usage = usage  # the run's accounting, updated by the caller
        self.total = len(tasks)
        self.done = self.cached = len(done)
        self.failed = sum(not result.ok for result in done.values())
        asked = [_asked_items(task) for task in tasks]
        units = {unit for _, unit in asked if unit}
        self.unit = units.pop() if len(units) == 1 else ("items" if units else "answers")
        self.requested = sum(n for n, _ in asked)
        self.kept = sum(_kept_items(tasks[index], result) for index, result in done.items())
        self.tokens_before = usage.completion_tokens  # replayed answers count no tokens/s
        self.started = time.monotonic()
        self.enabled = enabled
        self.terminal = enabled and _is_terminal(sys.stderr)
        self.bar = None
        self._logged_step, self._logged_at = -1, self.started

    def start(self) -> None:
        """The calls begin (after the endpoint is up: an embedded server's start counts in no rate or ETA)."""
        self.started = self._logged_at = time.monotonic()
        if self.terminal:
            self.bar = tqdm(
                total=self.total, initial=self.done, desc=self.description, unit="call", file=sys.stderr,
                bar_format=self.BAR_FORMAT, leave=True, postfix=self.stats(),
            )  # fmt: skip
        elif self.enabled:
            self._log()

    def stats(self) -> str:
        """``kept 8/10 samples, 12.3 tok/s, 1 failed``."""
        elapsed = time.monotonic() - self.started
        fresh = self.usage.completion_tokens - self.tokens_before
        rate = fresh / elapsed if elapsed > 0 else 0.0
        text = f"kept {self.kept}/{self.requested} {self.unit}, {rate:.1f} tok/s"
        if self.failed:
            text += f", {self.failed} failed"
        if self.cached:
            text += f", {self.cached} cached"
        return text

    def eta(self) -> str:
        """Remaining time at the rate of the calls finished in this run, ``?`` before the first."""
        if self.done >= self.total:
            return tqdm.format_interval(0)
        finished = self.done - self.cached
        if finished <= 0:
            return "?"
        elapsed = time.monotonic() - self.started
        return tqdm.format_interval(math.ceil(elapsed / finished * (self.total - self.done)))

    def line(self) -> str:
        """The log line: ``synalign:stage2: 5/10 calls (50%), kept 15/30 samples, 41.2 tok/s, elapsed 00:12, ETA 00:12``."""
        percent = 100 * self.done // self.total if self.total else 100
        elapsed = tqdm.format_interval(time.monotonic() - self.started)
        return (
            f"{self.description}: {self.done}/{self.total} calls ({percent}%), {self.stats()}, "
            f"elapsed {elapsed}, ETA {self.eta()}"
        )

    def expect(self, task: ChatTask) -> None:
        """A task joined the run (a follow-up): one call and its items more to wait for."""
        self.total += 1
        self.requested += _asked_items(task)[0]
        if self.bar is not None:
            self.bar.total = self.total

    def update(self, task: ChatTask, result: TaskResult) -> None:
        self.done += 1
        self.kept += _kept_items(task, result)
        self.failed += not result.ok
        if self.bar is not None:
            self.bar.set_postfix_str(self.stats(), refresh=False)
            self.bar.update(1)
        else:
            self.tick()

    def tick(self) -> None:
        """Log when a 10 % step is crossed or ``LOG_EVERY_S`` passed (log mode only)."""
        if not self.enabled or self.bar is not None:
            return
        step = 10 * self.done // self.total if self.total else 10
        if step > self._logged_step or time.monotonic() - self._logged_at >= self.LOG_EVERY_S:
            self._log()

    def _log(self) -> None:
        self._logged_step = 10 * self.done // self.total if self.total else 10
        self._logged_at = time.monotonic()
        logger.info("%s", self.line())

    def close(self) -> None:
        if self.terminal:
            if self.bar is None:  # every call replayed from the cache: the bar at its end
                self.start()
            self.bar.set_postfix_str(self.stats(), refresh=False)
            self.bar.close()
        elif self.enabled and (self.done < self.total or self._logged_step < 10):  # stopped, or all cached
            self._log()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _asked_items(task: ChatTask) -> tuple[int, str | None]:
    """(items the task asks for, their name): ``task.items``, else the ``maxItems`` (or ``minItems``) of the
    schema's one array property, named after it; else (1, None): one answer."""
    properties = (task.json_schema or {}).get("properties") or {}
    arrays = [
        (name, spec)
        for name, spec in properties.items()
        if isinstance(spec, dict) and spec.get("type") == "array"
    ]
    name = arrays[0][0] if len(arrays) == 1 else None
    if task.items is not None:
        return task.items, name or "items"
    if name is not None:
        n = arrays[0][1].get("maxItems") or arrays[0][1].get("minItems")
        if isinstance(n, int) and n > 0:
            return n, name
    return 1, None


def _kept_items(task: ChatTask, result: TaskResult) -> int:
    """Items of a validated answer: the length of a list value, else what the task asked for."""
    if not result.ok:
        return 0
    n, unit = _asked_items(task)
    if unit is not None and isinstance(result.value, list | tuple):
        return len(result.value)
    return n


_INVALID_ANSWER = (
    JSONExtractionError,
    ValidationError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
)


def _validate(task: ChatTask, text: str) -> tuple[Any, str]:
    """(value, "") when ``text`` passes the task's validation, else (None, the short error for a re-ask)."""
    try:
        parsed = extract_json(text)
    except JSONExtractionError as unreadable:  # cut off (max_tokens) or stopped early: its certain rejection
        rejection = task.stop_check(text) if task.stop_check is not None else ""
        return None, rejection or str(unreadable)
    try:
        return task.validate(parsed), ""
    except _INVALID_ANSWER as invalid:  # wrong shape
        return None, _short_error(invalid) or type(invalid).__name__


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    status = getattr(error, "status_code", None)
    name = type(error).__name__
    limit = 600 if isinstance(error, MalformedResponseError) else 200  # keep the quoted body whole
    message = str(error).splitlines()[0][:limit] if str(error) else ""
    return f"{name} {status}: {message}" if status else f"{name}: {message}"


def _short_error(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors()[:5]:
            location = ".".join(str(p) for p in item.get("loc", ())) or "answer"
            parts.append(f"{location}: {item.get('msg', '')}")
        return "; ".join(parts)
    if isinstance(error, KeyError):
        return f"the JSON lacks the key {error}"
    return str(error)[:500]


def cache_identity(llm: dict | LLMSettings) -> str:
    """The cache identity of the endpoint the ``llm`` parameters name, without starting any server.

    Matches ``Endpoint.identity`` from :func:`~synalign_kedro.core.llm_server.resolve_endpoint`:

    - ``llm.cache_identity`` when set (e.g. to share a cache between deployments of one model);
    - ``llm.endpoints`` (several endpoints): the model, never a URL, so a run resumed against other
      endpoints replays every finished call: the embedded identity below when ``model`` is an embedded
      catalogue key (remote llama-servers of the same GGUF share the local runs' cache), else
      ``remote:<model>``;
    - ``llm.base_url``: ``remote:<base_url>#<model>`` (unchanged, so existing caches keep replaying);
    - the embedded server: ``embedded:<file name>@<sha256[:16]>`` (catalogue models use their pinned
      checksum, so no file is hashed; a GGUF path is hashed once), the same for both server backends.
    """
    settings = llm if isinstance(llm, LLMSettings) else LLMSettings.model_validate(llm)
    if settings.cache_identity:
        return settings.cache_identity
    from .llm_server import model_identity
    from .models import EMBEDDED_LLMS, resolve_llm_path

    embedded = EMBEDDED_LLMS.get(settings.model)
    pinned = f"embedded:{embedded.filename}@{embedded.sha256[:16]}" if embedded and embedded.sha256 else None
    if settings.endpoints:
        return pinned or f"remote:{settings.model}"
    if settings.base_url:
        return f"remote:{settings.base_url.rstrip('/')}#{settings.model}"
    return pinned or f"embedded:{model_identity(resolve_llm_path(settings.model))}"


def open_cache(settings: LLMSettings) -> LLMCallCache:
    return LLMCallCache(Path(settings.cache_dir) / "llm_calls.sqlite")
