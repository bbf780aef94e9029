"""Run the real Kedro project (catalog, hooks, kedro-mlflow) in a scratch copy, in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def scratch_project(tmp_path: Path) -> Path:
    """A copy of the project's configuration and shipped raw data (the package itself is installed editable)."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("credentials.yml", "parameters_*local*"))
    for extra in (root / "conf" / "local").glob("*"):
        if extra.name != "README.md":
            extra.unlink()
    shutil.copytree(PROJECT_ROOT / "data" / "01_raw", root / "data" / "01_raw")
    (root / "src").mkdir()  # bootstrap_project wants one; the package itself is installed (editable)
    return root


def run_kedro(root: Path, env: str = "test", pipeline: str | None = None, params: dict | None = None, **run_args):
    bootstrap_project(root)
    try:
        with KedroSession.create(project_path=root, env=env, runtime_params=params or {}) as session:
            return session.run(pipeline_name=pipeline, **run_args)
    finally:
        # kedro-mlflow 2.0.3 with MLflow 3.17 pushes its run on MLflow's run stack more than once and pops it
        # once; a CLI run exits anyway, but several sessions in one process must not share the leftover.
        while mlflow.active_run():
            mlflow.end_run()


def load_parameters(env: str = "base", runtime_params: dict | None = None) -> dict:
    """The parameters Kedro gives a run in ``env`` (conf/base soft-merged with conf/<env>, as settings.py says),
    without conf/local."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"),
        env=env if env != "base" else None,
        base_env="base",
        default_run_env="base",
        merge_strategy={"parameters": "soft"},
        runtime_params=runtime_params,
    )
    return loader["parameters"]
