"""Project pipelines."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Slow, optional pipelines: registered by name only, outside ``__default__``. structured_records (LLMSynthor)
# makes one LLM call per iteration of its loop, and is a product of its own, not a step of the text pipeline.
NOT_IN_DEFAULT = ("coverage_sweep", "alignment_sweep", "structured_records")


def register_pipelines() -> dict[str, Pipeline]:
    """Every folder under ``pipelines/`` with a ``create_pipeline()`` is registered under its name;
    ``__default__`` runs them all but the sweeps (Kedro orders the nodes by their inputs and outputs).

    ``kedro run --pipeline coverage_sweep`` (paper figure 5), ``kedro run --pipeline alignment_sweep`` (table 5),
    ``kedro run --pipeline structured_records`` (LLMSynthor).
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipe for name, pipe in pipelines.items() if name not in NOT_IN_DEFAULT), Pipeline([])
    )
    return pipelines
