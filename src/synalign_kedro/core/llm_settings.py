"""The ``llm:`` parameter block (``conf/base/parameters_llm.yml``): one endpoint, several endpoints, the embedded
server, sampling, retries and the cache. Used by :mod:`~synalign_kedro.core.llm_client` and
:mod:`~synalign_kedro.core.llm_server`; unknown keys are rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EndpointSettings(BaseModel):
    """One entry of ``llm.endpoints``."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    max_concurrency: int | None = Field(None, ge=1, description="calls at once; default llm.max_concurrency")
    model: str | None = Field(None, description="model name at this endpoint; default llm.model")
    api_key_env: str | None = None


class ServerSettings(BaseModel):
    """``llm.server``: the embedded server (used only when neither ``base_url`` nor ``endpoints`` is set)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "llama_server", "llama_cpp_python"] = "auto"
    binary: str | None = None
    parallel: int | None = Field(None, ge=1, description="llama_server slots; default llm.max_concurrency")
    n_ctx: int = Field(4096, ge=256, description="context of one slot")
    n_threads: int | None = Field(None, ge=1)
    n_gpu_layers: int = 0
    cache_reuse: int = Field(256, ge=0)
    speculative: Literal["none", "ngram-simple"] = Field(
        "none",
        description="llama_server --spec-type: ngram-simple drafts the continuation of a repeated token run from "
        "the context (lossless: every token is still sampled from the model); measured no faster here, so off",
    )
    request_timeout: float | None = Field(None, gt=0, description="llama_server --timeout; default llm.timeout")
    startup_timeout: float = Field(180.0, gt=0)
    extra_args: list[str] = Field(default_factory=list)


class LLMSettings(BaseModel):
    """The ``llm:`` parameter block (``conf/base/parameters_llm.yml``); unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    model: str
    base_url: str | None = None
    endpoints: list[EndpointSettings] | None = None
    trace_sample_share: float = Field(
        1.0, ge=0.0, le=1.0, description="share of completed calls recorded as MLflow traces of the active run"
    )
    cache_identity: str | None = Field(
        None, description="the model identity cached calls are keyed on; default derived from model (and base_url)"
    )
    api_key_env: str | None = "OPENAI_API_KEY"
    server: ServerSettings = Field(default_factory=ServerSettings)
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1)
    seed: int = 42
    timeout: float = Field(120.0, gt=0)
    max_concurrency: int = Field(1, ge=1)
    max_retries: int = Field(2, ge=0, description="re-asks after a malformed answer")
    stop_failing_answers: Literal["auto"] | bool = Field(
        "auto",
        description="stream answers and stop one as soon as it is certain to fail validation (e.g. a repeated "
        "sample), then re-ask; auto: on for the embedded llama-server (exact token counts of a stopped answer)",
    )
    reask_shows_answer: bool = Field(
        False,
        description="a re-ask continues the conversation after the rejected answer (true), or asks the request "
        "afresh with the error appended (false: small models copy an answer they are shown)",
    )
    transport_retries: int = Field(
        6, ge=1, description="attempts per call on connection errors, 429, 5xx, timeouts"
    )
    transport_budget_s: float = Field(
        180.0, gt=0, description="seconds of retrying one call before giving up"
    )
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    endpoint_max_failures: int = Field(
        3, ge=1, description="consecutive transport failures that take one of several endpoints out"
    )
    structured_output: Literal["auto", "json_schema", "json_object", "plain"] = "auto"
    retry_failed: bool = Field(
        False, description="ask again for tasks whose cached answers all failed validation (and replace them)"
    )
    cache_dir: str = "data/02_intermediate/llm_cache"
    show_progress: bool = True

    @model_validator(mode="after")
    def _one_kind_of_endpoint(self) -> LLMSettings:
        if self.base_url and self.endpoints:
            raise ValueError("set either llm.base_url (one endpoint) or llm.endpoints (several), not both")
        return self

    @property
    def remote(self) -> bool:
        return bool(self.base_url or self.endpoints)

    def resolved_structured_output(self) -> str:
        """``auto``: ``json_object`` + schema for the embedded server (llama.cpp's grammar on both backends;
        llama-cpp-python refuses ``json_schema``), ``json_schema`` for remote endpoints."""
        if self.structured_output != "auto":
            return self.structured_output
        return "json_schema" if self.remote else "json_object"
