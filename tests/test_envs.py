"""The named deployment envs (conf/gpu, conf/vllm, conf/dask): each resolves through Kedro's OmegaConfigLoader
with the project's settings, lists only what differs from conf/base, and its parameter blocks validate against
the project's settings models."""

from __future__ import annotations

import copy
import functools
import importlib
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from synalign_kedro import settings as project_settings

CONF = Path(__file__).resolve().parents[1] / "conf"
NAMED_ENVS = ("gpu", "vllm", "dask")

# Parameter block -> its settings model ("module:Class", the first importable one wins). Blocks whose model is
# not written yet are reported as skipped, not silently passed; add a line here when a block gets its model.
SETTINGS_MODELS: dict[str, tuple[str, ...]] = {
    "llm": ("synalign_kedro.core.llm_client:LLMSettings",),
    "dask_client": ("synalign_kedro.runners.dask_runner:DaskClientSettings",),
    "embedding": ("synalign_kedro.core.embedding:EmbeddingSettings",),
    "exploration": (
        "synalign_kedro.core.exploration:ExplorationSettings",
        "synalign_kedro.core.coverage:ExplorationSettings",
    ),
    "alignment": (
        "synalign_kedro.core.alignment:AlignmentSettings",
        "synalign_kedro.core.aligned_variants:AlignmentSettings",
    ),
    "evaluation": ("synalign_kedro.core.evaluation:EvaluationSettings",),
    "generation": (
        "synalign_kedro.core.generation:GenerationSettings",
        "synalign_kedro.core.generation.config:GenerationSettings",
    ),
    "ab_export": (
        "synalign_kedro.core.ab_test:AbExportSettings",
        "synalign_kedro.core.ab_testing:AbExportSettings",
    ),
}


def settings_model(block: str):
    for target in SETTINGS_MODELS.get(block, ()):
        module, _, name = target.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def config_loader(env: str) -> OmegaConfigLoader:
    """The loader `kedro run --env <env>` builds: the project's CONFIG_LOADER_CLASS and CONFIG_LOADER_ARGS."""
    return project_settings.CONFIG_LOADER_CLASS(conf_source=str(CONF), env=env, **project_settings.CONFIG_LOADER_ARGS)


@functools.cache
def _parameters(env: str) -> dict:
    return config_loader(env)["parameters"]


def parameters(env: str) -> dict:
    """The parameters `kedro run --env <env>` sees (loaded once per env; a copy per caller)."""
    return copy.deepcopy(_parameters(env))


@functools.cache
def _base_parameters() -> dict:
    loader = OmegaConfigLoader(conf_source=str(CONF), env="base", base_env="base", default_run_env="base")
    return loader["parameters"]


def base_parameters() -> dict:
    return copy.deepcopy(_base_parameters())


def env_overrides(env: str) -> dict:
    """What the env's own parameter files say, merged (the env's files must not repeat one another's keys)."""
    overrides: dict = {}
    for path in sorted((CONF / env).glob("parameters*.yml")):
        content = yaml.safe_load(path.read_text()) or {}
        repeated = set(overrides) & set(content)
        assert not repeated, f"{path.name} repeats {sorted(repeated)}"
        overrides.update(content)
    return overrides


def leaf_paths(tree: dict, prefix: tuple = ()) -> dict[tuple, object]:
    leaves = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            leaves.update(leaf_paths(value, (*prefix, key)))
        else:
            leaves[(*prefix, key)] = value
    return leaves


def lookup(tree: dict, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


SOFT_MERGED = (project_settings.CONFIG_LOADER_ARGS.get("merge_strategy") or {}).get("parameters") == "soft"


def needs_soft_merge(check):
    """Run ``check``; until settings.py soft-merges parameters, a failure is reported as an expected failure."""
    try:
        check()
    except Exception as error:
        if SOFT_MERGED:
            raise
        pytest.xfail(
            "the named envs list only what differs from base, so settings.py must set "
            f"CONFIG_LOADER_ARGS['merge_strategy'] = {{'parameters': 'soft'}} (issue 10); meanwhile: {error}"
        )


@pytest.mark.parametrize("env", NAMED_ENVS)
def test_the_env_resolves(env):
    loader = config_loader(env)
    assert loader["parameters"], env
    loader["catalog"]  # resolves (the envs add no catalog entries: the base catalog must still load)
    assert env_overrides(env), f"conf/{env} has no parameters"


@pytest.mark.parametrize("env", NAMED_ENVS)
def test_the_env_lists_only_what_differs_from_base(env):
    base = base_parameters()
    for path, value in leaf_paths(env_overrides(env)).items():
        try:
            base_value = lookup(base, path)
        except (KeyError, TypeError):
            # A key base does not have: only a new block of the env's own (dask_client), never a typo inside an
            # existing block (the block's model would reject it too, below).
            assert path[0] not in base, f"conf/{env}: {'.'.join(map(str, path))} is not a key of conf/base"
            continue
        assert base_value != value, f"conf/{env}: {'.'.join(map(str, path))} repeats the base value {value!r}"


@pytest.mark.parametrize("env", NAMED_ENVS)
def test_the_env_keeps_every_base_setting_it_does_not_change(env):
    base, merged, overrides = base_parameters(), parameters(env), leaf_paths(env_overrides(env))

    def check():
        for path, value in [*leaf_paths(base).items(), *overrides.items()]:
            name = ".".join(map(str, path))
            try:
                merged_value = lookup(merged, path)
            except (KeyError, TypeError):
                raise AssertionError(f"--env {env} loses {name}") from None
            assert merged_value == overrides.get(path, value), f"--env {env}: {name}"

    needs_soft_merge(check)


def _blocks_to_validate():
    for env in NAMED_ENVS:
        for block in sorted(env_overrides(env)):
            yield pytest.param(env, block, id=f"{env}-{block}")


@pytest.mark.parametrize(("env", "block"), list(_blocks_to_validate()))
def test_every_block_the_env_changes_validates(env, block):
    model = settings_model(block)
    if model is None:
        pytest.skip(f"no settings model for the `{block}` block yet (SETTINGS_MODELS in this file)")
    needs_soft_merge(lambda: model.model_validate(parameters(env)[block]))


def test_the_deployment_values():
    gpu = parameters("gpu") if SOFT_MERGED else env_overrides("gpu")
    assert gpu["llm"]["server"]["n_gpu_layers"] == -1
    assert gpu["embedding"]["device"] == "cuda"
    vllm = env_overrides("vllm")["llm"]
    assert vllm["base_url"].startswith("http") and vllm["base_url"].endswith("/v1")
    assert vllm["max_concurrency"] > 1
    from synalign_kedro.runners import DaskClientSettings

    assert DaskClientSettings.model_validate(env_overrides("dask")["dask_client"]).address.startswith("tcp://")


def test_a_typo_in_an_env_block_is_rejected():
    """The models reject unknown keys, so a misspelt override cannot silently do nothing."""
    from pydantic import ValidationError

    from synalign_kedro.core.llm_client import LLMSettings
    from synalign_kedro.runners import DaskClientSettings

    llm = {**base_parameters()["llm"], "max_concurency": 8}
    with pytest.raises(ValidationError, match="max_concurency"):
        LLMSettings.model_validate(llm)
    with pytest.raises(ValidationError, match="adress"):
        DaskClientSettings.model_validate({"adress": "tcp://127.0.0.1:8786"})
