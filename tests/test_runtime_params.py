"""`--params a.b=x` changes one key and keeps the rest of block `a`, also while conf/local holds parameter files.

Kedro merges runtime parameters into each env's parameters before merging the envs; with its default
("destructive") merge, any parameters_*.yml in conf/local then replaced the whole `generation` block by
`{n_samples: 8}` and the run failed with `Pipeline input(s) {'params:generation.methods.simprompt'} not found`.
settings.py asks for a soft (key by key) merge of parameters.
"""

from __future__ import annotations

import pytest
import yaml
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from omegaconf import OmegaConf

from tests.kedro_helpers import scratch_project


def conf_block(project, env: str, filename: str, key: str) -> dict:
    return yaml.safe_load((project / "conf" / env / filename).read_text())[key]


def merged_block(project, env: str | None, base_file: str, env_file: str, key: str) -> dict:
    """conf/base's block with the env's keys merged over it, key by key (what the soft merge should give)."""
    block = conf_block(project, "base", base_file, key)
    if env is not None:
        override = yaml.safe_load((project / "conf" / env / env_file).read_text()).get(key) or {}
        block = OmegaConf.to_container(OmegaConf.merge(block, override))
    return block


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = scratch_project(tmp_path_factory.mktemp("runtime_params"))
    # What docs/ingestion.md and docs/llm_endpoints.md tell a user to add.
    (root / "conf/local/parameters_dataset_mydata.yml").write_text(
        "dataset_mydata:\n  train_path: data/01_raw/mine.csv\n  text_column: review\n  label_column: stars\n"
    )
    (root / "conf/local/parameters_llm.yml").write_text(
        "llm:\n  base_url: http://127.0.0.1:8000/v1\n  model: my-model\n"
    )
    bootstrap_project(root)
    return root


def load(project, env: str | None, runtime_params: dict):
    with KedroSession.create(project_path=project, env=env, runtime_params=runtime_params) as session:
        context = session.load_context()
        return context.params, context.catalog


@pytest.mark.parametrize("env", [None, "test"])  # None: the default run env, conf/base + conf/local
def test_dotted_runtime_params_keep_the_rest_of_the_block(project, env):
    # what `kedro run --params generation.n_samples=8,embedding.device=cuda` passes (OmegaConf dot-list)
    runtime = {"generation": {"n_samples": 8}, "embedding": {"device": "cuda"}, "llm": {"temperature": 0.1}}
    params, catalog = load(project, env, runtime)

    generation = merged_block(project, env, "parameters_generation.yml", "parameters.yml", "generation")
    assert params["generation"] == {**generation, "n_samples": 8}
    embedding = conf_block(project, "base", "parameters.yml", "embedding")
    assert params["embedding"] == {**embedding, "device": "cuda"}
    llm = merged_block(project, env, "parameters_llm.yml", "parameters_llm.yml", "llm")
    if env is None:  # conf/local/parameters_llm.yml sets two keys; the others come from conf/base
        llm = {**llm, "base_url": "http://127.0.0.1:8000/v1", "model": "my-model"}
        assert params["dataset_mydata"]["text_column"] == "review"
    assert params["llm"] == {**llm, "temperature": 0.1}

    missing = {
        name
        for pipeline in pipelines.values()
        for name in pipeline.inputs()
        if name.startswith("params:") and name not in catalog
    }
    assert not missing  # on Kedro's default merge: {'params:generation.methods.simprompt', ...}
