"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from kedro.config import OmegaConfigLoader

from synalign_kedro.hooks import LLMServerHook, MlflowArtifactHook, ParameterValidationHook, RunInfoHook

# kedro-mlflow registers its own hook through its entry point; ours come after it.
HOOKS = (ParameterValidationHook(), LLMServerHook(), RunInfoHook(), MlflowArtifactHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
}
