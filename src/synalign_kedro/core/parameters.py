"""Every parameter block and the settings model that validates it: the one list the run-start check (the
``ParameterValidationHook`` in ``hooks.py``) walks, so that a bad value fails before the first node runs,
with a message that names the parameter, instead of deep inside a node after ingestion and embedding ran.

Each model lives beside the code it configures; its defaults are the only defaults (``conf/base`` repeats
them as documentation, and ``tests/test_parameters.py`` checks that the two agree).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .ab_testing import AbExportSettings
from .aligned_variants import AlignmentSettings, AlignmentSweepSettings
from .coverage import CoverageSweepSettings, ExplorationSettings
from .embedding import EmbeddingSettings
from .evaluation import EvaluationSettings
from .generation import GenerationSettings
from .llm_client import LLMSettings


class RunSettings(BaseModel):
    """The top-level scalars: the active data set's name and the run's seed."""

    model_config = ConfigDict(extra="ignore")  # the other top-level keys are blocks, checked one by one

    dataset: str = "sst2"
    seed: int = 42


PARAMETER_BLOCKS: dict[str, type[BaseModel]] = {
    "embedding": EmbeddingSettings,
    "exploration": ExplorationSettings,
    "coverage_sweep": CoverageSweepSettings,
    "generation": GenerationSettings,
    "llm": LLMSettings,
    "alignment": AlignmentSettings,
    "alignment_sweep": AlignmentSweepSettings,
    "evaluation": EvaluationSettings,
    "ab_export": AbExportSettings,
}


class ParameterError(ValueError):
    """One or more parameters do not fit their settings model (the message lists each, by its full name)."""


def validate_parameters(parameters: dict[str, Any]) -> dict[str, BaseModel]:
    """Validate the run's scalars and every block of :data:`PARAMETER_BLOCKS` present in ``parameters``;
    returns the validated models by block name, or raises :class:`ParameterError` listing every problem as
    ``<block>.<key>: <what is wrong> (got <value>)``."""
    problems: list[str] = []
    validated: dict[str, BaseModel] = {}
    checks: list[tuple[str, type[BaseModel], Any]] = [("", RunSettings, parameters)]
    checks += [(name, model, parameters[name]) for name, model in PARAMETER_BLOCKS.items() if name in parameters]
    for name, model, value in checks:
        try:
            validated[name or "run"] = model.model_validate(value)
        except ValidationError as error:
            for item in error.errors():
                where = ".".join([name, *map(str, item["loc"])] if name else map(str, item["loc"]))
                problems.append(f"{where or name}: {item['msg']} (got {item.get('input')!r})")
    if problems:
        raise ParameterError(
            "invalid parameters (conf/<env>/parameters*.yml or --params):\n  " + "\n  ".join(problems)
        )
    return validated
