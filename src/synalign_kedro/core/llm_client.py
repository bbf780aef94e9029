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
- **Transport retries**: connection errors, timeouts, HTTP 429 and 5xx are retried with exponential
  backoff and full jitter (``tenacity``), bounded by ``transport_retries`` attempts and
  ``transport_budget_s`` seconds per call; past that :class:`LLMUnavailableError` ends the run with a
  clear message. Everything finished so far is in the cache, so a re-run resumes.
- **Cache** (:mod:`~synalign_kedro.core.llm_cache`): every completed call is committed under the hash of
  the endpoint identity, messages and sampling settings. Tasks are first replayed from the cache in the
  calling thread; the endpoint (which may start the embedded server) is only resolved, from that same
  thread, when some call is not cached.
- **Accounting**: calls, cache hits, re-asks, transport retries, failures, tokens and wall time, and a
  ``tqdm`` progress bar (calls done / total, tokens/s).

API keys live only inside :class:`~synalign_kedro.core.llm_server.Endpoint` (excluded from its repr) and
the ``openai`` client; nothing here logs or returns them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError
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
from .llm_server import Endpoint

logger = logging.getLogger(__name__)

DEFAULT_REASK = (
    "Your previous answer could not be used: {error}\n"
    "Answer again with only the JSON requested, following every instruction above."
)


class LLMSettings(BaseModel):
    """The ``llm:`` parameter block (``conf/base/parameters_llm.yml``); unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    model: str
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    server: dict[str, Any] = Field(default_factory=dict)
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1)
    seed: int = 42
    timeout: float = Field(120.0, gt=0)
    max_concurrency: int = Field(1, ge=1)
    max_retries: int = Field(2, ge=0, description="re-asks after a malformed answer")
    transport_retries: int = Field(
        6, ge=1, description="attempts per call on connection errors, 429, 5xx, timeouts"
    )
    transport_budget_s: float = Field(
        180.0, gt=0, description="seconds of retrying one call before giving up"
    )
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    structured_output: Literal["auto", "json_schema", "json_object", "plain"] = "auto"
    cache_dir: str = "data/02_intermediate/llm_cache"
    show_progress: bool = True

    def resolved_structured_output(self) -> str:
        if self.structured_output != "auto":
            return self.structured_output
        return "json_schema" if self.base_url else "json_object"


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
    """

    task_id: str
    messages: list[dict[str, str]]
    schema_name: str
    json_schema: dict | None
    validate: Callable[[Any], Any]
    seed_offset: int = 0


@dataclass
class TaskResult:
    task_id: str
    ok: bool
    value: Any = None
    raw_responses: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class LLMUsage:
    """Accounting of one batch of tasks (one method)."""

    tasks: int = 0
    calls: int = 0
    cache_hits: int = 0
    reasks: int = 0
    transport_retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    call_seconds: float = 0.0
    wall_seconds: float = 0.0

    def add(self, other: LLMUsage) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.call_seconds if self.call_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        out = asdict(self)
        out["completion_tokens_per_second"] = round(self.tokens_per_second, 3)
        return out


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, openai.APIConnectionError | openai.APITimeoutError):  # includes ConnectionError
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code == 429 or error.status_code >= 500
    return False


class LLMClient:
    """Runs :class:`ChatTask` lists against one endpoint, through the cache.

    ``identity`` names the model behind the endpoint for the cache (see
    :func:`~synalign_kedro.core.llm_server.resolve_endpoint`); ``endpoint_factory`` is called at most once,
    from the thread that calls :meth:`run`, and only when a call is not cached.
    """

    def __init__(
        self,
        settings: LLMSettings,
        identity: str,
        endpoint_factory: Callable[[], Endpoint],
        cache: LLMCallCache,
        reask_template: str = DEFAULT_REASK,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self._endpoint_factory = endpoint_factory
        self._endpoint: Endpoint | None = None
        self._openai: openai.OpenAI | None = None
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
        if self._openai is not None:
            return
        self._endpoint = self._endpoint_factory()
        if self._endpoint.identity != self.identity:
            logger.warning(
                "Endpoint identity %s differs from the cache identity %s",
                self._endpoint.identity,
                self.identity,
            )
        self._openai = openai.OpenAI(
            base_url=self._endpoint.base_url,
            api_key=self._endpoint.api_key,
            timeout=self.settings.timeout,
            max_retries=0,  # retries are ours (bounded, with jitter, counted)
        )

    def _network_call(self, messages: list[dict], sampling: dict, usage: LLMUsage) -> CachedCall:
        assert self._openai is not None and self._endpoint is not None
        settings = self.settings

        def count_retry(state) -> None:
            usage.transport_retries += 1
            logger.warning(
                "LLM call failed (%s); retry %d in %.1f s",
                _describe(state.outcome.exception()),
                state.attempt_number,
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = Retrying(
            stop=stop_after_attempt(settings.transport_retries)
            | stop_after_delay(settings.transport_budget_s),
            wait=wait_random_exponential(multiplier=settings.backoff_initial_s, max=settings.backoff_max_s),
            retry=retry_if_exception(_is_transient),
            before_sleep=count_retry,
            reraise=True,
        )
        started = time.perf_counter()
        try:
            for attempt in retrying:
                with attempt:
                    extra = {}
                    if "response_format" in sampling:
                        extra["response_format"] = sampling["response_format"]
                    if "top_p" in sampling:
                        extra["top_p"] = sampling["top_p"]
                    response = self._openai.chat.completions.create(
                        model=self._endpoint.model,
                        messages=messages,
                        temperature=sampling["temperature"],
                        max_tokens=sampling["max_tokens"],
                        seed=sampling["seed"],
                        **extra,
                    )
        except RetryError as error:  # pragma: no cover - reraise=True makes tenacity raise the last error
            raise LLMUnavailableError(str(error)) from error
        except Exception as error:
            if _is_transient(error):
                hint = (
                    f" Requests took longer than llm.timeout={settings.timeout:.0f} s: raise it (a busy CPU slows the "
                    "embedded server, which also keeps generating the answers it no longer delivers)."
                    if isinstance(error, openai.APITimeoutError)
                    else ""
                )
                raise LLMUnavailableError(
                    f"LLM endpoint {self.identity} kept failing ({_describe(error)}) after "
                    f"{settings.transport_retries} attempts / {settings.transport_budget_s:.0f} s of retries.{hint} "
                    f"{len(self.cache)} finished calls are kept in {self.cache.path}; re-run to resume."
                ) from error
            raise
        seconds = time.perf_counter() - started
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice and choice.message else None) or ""
        prompt_tokens = int(getattr(response.usage, "prompt_tokens", 0) or 0) if response.usage else 0
        completion_tokens = int(getattr(response.usage, "completion_tokens", 0) or 0) if response.usage else 0
        return CachedCall(
            text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, seconds=seconds
        )

    def _complete(self, messages: list[dict], sampling: dict, usage: LLMUsage, network: bool) -> str:
        key = call_key(self.identity, messages, sampling)
        cached = self.cache.get(key)
        if cached is not None:
            usage.cache_hits += 1
            usage.cached_prompt_tokens += cached.prompt_tokens
            usage.cached_completion_tokens += cached.completion_tokens
            return cached.text
        if not network:
            raise _NeedsNetwork
        call = self._network_call(messages, sampling, usage)
        self.cache.put(key, self.identity, {"messages": messages, "sampling": sampling}, call)
        usage.calls += 1
        usage.prompt_tokens += call.prompt_tokens
        usage.completion_tokens += call.completion_tokens
        usage.call_seconds += call.seconds
        return call.text

    def _run_task(self, task: ChatTask, network: bool) -> tuple[TaskResult, LLMUsage]:
        usage = LLMUsage(tasks=1)
        sampling = self._sampling(task)
        messages = [dict(m) for m in task.messages]
        raws: list[str] = []
        error = ""
        for attempt in range(self.settings.max_retries + 1):
            if attempt:  # a fresh seed too: small models tend to repeat their previous answer verbatim
                usage.reasks += 1
                sampling = {**sampling, "seed": self.settings.seed + task.seed_offset + 1_000_003 * attempt}
            try:
                text = self._complete(messages, sampling, usage, network)
            except (
                openai.BadRequestError
            ) as bad_request:  # e.g. the prompt exceeds the context: not retryable
                error = f"request refused: {_describe(bad_request)}"
                break
            raws.append(text)
            try:
                value = task.validate(extract_json(text))
                return TaskResult(task.task_id, True, value, raws), usage
            except (
                JSONExtractionError,
                ValidationError,
                ValueError,
                TypeError,
                KeyError,
                IndexError,
                AttributeError,
            ) as invalid:  # wrong shape
                error = _short_error(invalid)
            messages = messages + [
                {"role": "assistant", "content": text[:4000]},
                {"role": "user", "content": self.reask_template.format(error=error)},
            ]
        usage.failures += 1
        logger.info("Task %s failed after %d answer(s): %s", task.task_id, len(raws), error)
        return TaskResult(task.task_id, False, None, raws, error), usage

    # ----------------------------------------------------------------- batch
    def run(self, tasks: list[ChatTask], description: str = "llm") -> tuple[list[TaskResult], LLMUsage]:
        """Run ``tasks`` (results in task order): cached ones replayed, the rest sent concurrently."""
        started = time.perf_counter()
        total = LLMUsage()
        results: dict[int, TaskResult] = {}
        pending: list[int] = []
        for index, task in enumerate(tasks):  # pass 1: cache only, in this thread
            try:
                result, usage = self._run_task(task, network=False)
            except _NeedsNetwork:
                pending.append(index)
                continue
            results[index] = result
            total.add(usage)
        bar = tqdm(
            total=len(tasks),
            initial=len(results),
            desc=description,
            unit="call",
            disable=not self.settings.show_progress,
            leave=True,
        )
        try:
            if pending:
                self._ensure_endpoint()  # may start the embedded server: this thread only
                self._run_pending(tasks, pending, results, total, bar)
        finally:
            bar.close()
            total.wall_seconds += time.perf_counter() - started
        return [results[i] for i in range(len(tasks))], total

    def _run_pending(self, tasks, pending, results, total: LLMUsage, bar) -> None:
        def work(index: int):
            return index, *self._run_task(tasks[index], network=True)

        def record(index: int, result: TaskResult, usage: LLMUsage) -> None:
            results[index] = result
            with self._stats_lock:
                total.add(usage)
            bar.update(1)
            bar.set_postfix(tok_s=f"{total.tokens_per_second:.1f}", failed=total.failures, refresh=False)

        if self.settings.max_concurrency == 1:
            for index in pending:
                record(*work(index))
            return
        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency, thread_name_prefix="llm") as pool:
            futures = {pool.submit(work, index) for index in pending}
            while futures:
                done, futures = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        for other in futures:
                            other.cancel()
                        raise future.exception()
                    record(*future.result())


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    status = getattr(error, "status_code", None)
    name = type(error).__name__
    message = str(error).splitlines()[0][:200] if str(error) else ""
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
    ``remote:<base_url>#<model>`` or ``embedded:<file name>@<sha256[:16]>`` (embedded catalogue models use
    their pinned checksum, so no file is hashed; a GGUF path is hashed once).
    """
    settings = llm if isinstance(llm, LLMSettings) else LLMSettings.model_validate(llm)
    if settings.base_url:
        return f"remote:{settings.base_url.rstrip('/')}#{settings.model}"
    from .llm_server import model_identity
    from .models import EMBEDDED_LLMS, resolve_llm_path

    embedded = EMBEDDED_LLMS.get(settings.model)
    if embedded is not None and embedded.sha256:
        return f"embedded:{embedded.filename}@{embedded.sha256[:16]}"
    return f"embedded:{model_identity(resolve_llm_path(settings.model))}"


def open_cache(settings: LLMSettings) -> LLMCallCache:
    return LLMCallCache(Path(settings.cache_dir) / "llm_calls.sqlite")
