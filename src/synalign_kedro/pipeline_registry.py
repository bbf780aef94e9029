"""Project pipelines."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from synalign_kedro.pipelines.alignment import create_sweep_pipeline as create_alignment_sweep_pipeline
from synalign_kedro.pipelines.evaluation.coverage_sweep import create_coverage_sweep_pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Every folder under ``pipelines/`` with a ``create_pipeline()`` is registered under its name;
    ``__default__`` runs them all (Kedro orders the nodes by their inputs and outputs).

    Sweeps are slow and optional, so they are registered by name only, outside ``__default__``:
    ``kedro run --pipeline coverage_sweep`` (paper figure 5), ``kedro run --pipeline alignment_sweep`` (table 5).
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    pipelines["coverage_sweep"] = create_coverage_sweep_pipeline()
    pipelines["alignment_sweep"] = create_alignment_sweep_pipeline()
    return pipelines
