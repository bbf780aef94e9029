"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from kedro.config import OmegaConfigLoader

from synalign_kedro.atomic_writes import AtomicWritesHook
from synalign_kedro.hooks import (
    LLMServerHook,
    MlflowArtifactHook,
    ParameterValidationHook,
    RunInfoHook,
    RunSummaryHook,
)

# kedro-mlflow registers its own hook through its entry point; ours come after it.
# ParameterValidationHook: every parameter block is validated by its settings model before the first node runs.
# MlflowArtifactHook: output files marked `mlflow_artifact_path` are logged to MLflow at the end of the run.
# RunSummaryHook: at the end of the run, what each method kept, the report's answer and where the report is.
# AtomicWritesHook: every local-file dataset write goes to a temp sibling, then is renamed (atomic_writes.py).
HOOKS = (
    ParameterValidationHook(),
    LLMServerHook(),
    RunInfoHook(),
    MlflowArtifactHook(),
    AtomicWritesHook(),
    RunSummaryHook(),
)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Parameters merge key by key across envs (base < local or test < --params): an env, or `--params a.b=x`,
    # changes only the keys it names and keeps the rest of each block. Kedro's default ("destructive")
    # replaces a whole top-level block, and runtime parameters are merged into every env's parameters first,
    # so with any parameters_*.yml in conf/local, `--params generation.n_samples=8` dropped every other
    # generation setting.
    "merge_strategy": {"parameters": "soft"},
}
