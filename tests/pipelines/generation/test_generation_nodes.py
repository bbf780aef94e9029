"""The generation pipeline: wiring (namespaces, dataset names) and a run against the scripted server."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from synalign_kedro.core.embedding import embed_with_settings
from synalign_kedro.core.generation import POOL_COLUMNS, GenerationSettings, GenerationShortfallError
from synalign_kedro.core.variants import DEMONSTRATION_METHODS
from synalign_kedro.core.variants import GENERATION_METHODS as METHODS
from synalign_kedro.pipelines.generation.nodes import generate_synthetic_pool, select_prompts
from synalign_kedro.pipelines.generation.pipeline import create_pipeline
from tests.core.scripted_server import ScriptedLLMServer
from tests.kedro_helpers import load_parameters


@pytest.fixture(scope="module")
def inputs(sst2_train):
    real = sst2_train.head(300).reset_index(drop=True)
    batches = pd.DataFrame(
        [
            {"batch_id": i, "label": label, "row_ids": [f"{i}-{j}" for j in range(4)],
             "texts": real[real.label == label].text.iloc[4 * i : 4 * i + 4].tolist(), "variance_at_selection": 1.0 - i / 10, "round": i}
            for i, label in enumerate(["positive", "negative", "positive", "negative"])
        ]
    )  # fmt: skip
    params = load_parameters("test")
    profile = {**params["dataset_sst2"], "name": "sst2"}
    return real, batches, profile, params


def test_one_namespaced_instance_per_method():
    pipe = create_pipeline()
    assert {n.namespace for n in pipe.nodes} == set(METHODS)
    expected = {
        f"{kind}_{m}" for m in METHODS for kind in ("synthetic_pool", "llm_usage", "llm_usage_metrics")
    }
    # the feedback method's usage report also feeds its plot
    assert pipe.outputs() == expected - {"llm_usage_synalign_feedback"} | {"synalign_feedback.feedback_trace_plot"}
    assert {"demonstration_batches", "dataset_profile", "real_train", "params:llm"} <= pipe.inputs()
    one = pipe.only_nodes_with_namespaces(["simprompt"])
    assert one.outputs() == {"synthetic_pool_simprompt", "llm_usage_simprompt", "llm_usage_metrics_simprompt"}


def test_only_the_methods_that_show_demonstrations_wait_for_exploration():
    pipe = create_pipeline()
    for method in METHODS:
        inputs = pipe.only_nodes_with_namespaces([method]).inputs()
        assert ("demonstration_batches" in inputs) == (method in DEMONSTRATION_METHODS), method
    assert set(DEMONSTRATION_METHODS) == {"synalign", "synalign_one_stage", "synalign_feedback"}


def test_the_feedback_method_measures_its_pool_in_the_embedding_space_of_real_train():
    inputs = create_pipeline().only_nodes_with_namespaces(["synalign_feedback"]).inputs()
    assert {"real_train_embeddings", "params:embedding", "demonstration_batches"} <= inputs
    assert "real_train_embeddings" not in create_pipeline().only_nodes_with_namespaces(["synalign"]).inputs()


def test_select_prompts_picks_the_active_dataset(inputs):
    *_, params = inputs
    for dataset in ("sst2", "ag_news", "amazon_category", "my_own_data"):
        prompts = select_prompts(dataset, params)
        own = params.get(f"prompts_{dataset}", {})
        assert prompts["stage2"] == own.get("stage2", params["prompts_default"]["stage2"])


def test_shipped_budgets_are_equal_across_methods():
    for env in ("base", "test"):
        settings = GenerationSettings.model_validate(load_parameters(env)["generation"])
        budgets = {settings.method_config(m, 0).n_samples for m in METHODS}
        assert len(budgets) == 1


def test_generation_methods_keys_are_checked_against_the_registry():
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['simprompt_v2'\]"):
        GenerationSettings.model_validate({"methods": {"simprompt_v2": {}}})
    with pytest.raises(ValueError, match="n_samples"):
        GenerationSettings.model_validate({"methods": {"simprompt": {"n_samples": 0}}})
    settings = GenerationSettings.model_validate({"n_samples": 8, "methods": {"synalign": {"n_per_call": 2}}})
    assert settings.method_config("synalign", 3).model_dump(include={"n_samples", "n_per_call", "seed"}) == {
        "n_samples": 8, "n_per_call": 2, "seed": 3,
    }


class KeptDataset(MemoryDataset):
    """A memory dataset the runner does not release after its last consumer (the feedback plot), so the test
    can read every usage report."""

    def _release(self) -> None:
        pass


def test_generation_pipeline_runs_every_method_against_an_endpoint(inputs, tmp_path):
    real, batches, profile, params = inputs
    llm = {**params["llm"], "base_url": None, "cache_dir": str(tmp_path / "cache"), "show_progress": False}
    with ScriptedLLMServer(script=["garbage"]) as server:
        llm["base_url"] = server.url
        llm["structured_output"] = "json_object"
        catalog = DataCatalog(
            datasets={
                "demonstration_batches": MemoryDataset(batches),
                "dataset_profile": MemoryDataset(profile),
                "real_train": MemoryDataset(real),
                "parameters": MemoryDataset({**params, "llm": llm}),
                "params:dataset": MemoryDataset("sst2"),
                "params:llm": MemoryDataset(llm),
                "params:seed": MemoryDataset(42),
                "params:generation": MemoryDataset(params["generation"]),
                "params:embedding": MemoryDataset(params["embedding"]),
                "real_train_embeddings": MemoryDataset(embed_with_settings(real["text"], params["embedding"])),
                "synalign_feedback.feedback_trace_plot": MemoryDataset(),
                **{
                    f"{kind}_{m}": KeptDataset()
                    for m in METHODS
                    for kind in ("synthetic_pool", "llm_usage", "llm_usage_metrics")
                },
            }
        )
        SequentialRunner().run(create_pipeline(), catalog)
        calls = len(server.calls)
    n_samples = params["generation"]["n_samples"]
    total_calls = 0
    for method in METHODS:
        pool = catalog.load(f"synthetic_pool_{method}")
        usage = catalog.load(f"llm_usage_{method}")
        metrics = catalog.load(f"llm_usage_metrics_{method}")
        assert list(pool.columns) == POOL_COLUMNS and len(pool) == n_samples
        assert (pool.method == method).all() and usage["method"] == method
        assert metrics["calls"] == {"value": float(usage["calls"]), "step": 0}
        assert metrics["failed_tasks"]["value"] == len(usage["failures"]) and json.dumps(
            usage
        )  # JSON-serialisable
        total_calls += usage["calls"]
    assert total_calls == calls  # every call accounted for; the garbage answer was re-asked
    assert sum(catalog.load(f"llm_usage_{m}")["reasks"] for m in METHODS) == 1


@pytest.mark.slow
def test_node_generates_with_the_embedded_test_llm(inputs, test_llm_endpoint, tmp_path):
    """Real llama.cpp server (SmolLM2-135M): the node finishes and records what failed, junk or not."""
    real, batches, profile, params = inputs
    llm = {
        **params["llm"],
        "cache_dir": str(tmp_path),
        "max_tokens": 96,
        "max_retries": 0,
        "show_progress": False,
    }
    prompts = select_prompts("sst2", params)
    # the 135M model may keep nothing: this test is about the mechanics, so no share is required
    generation = {**params["generation"], "n_samples": 2, "n_per_call": 2, "min_kept_share": 0.0}
    pool, usage, metrics = generate_synthetic_pool("simprompt", profile, real, prompts, generation, llm, 42)
    assert usage["calls"] == 1 and usage["completion_tokens"] > 0
    assert usage["model"] == test_llm_endpoint.identity
    assert len(pool) + len(usage["failures"]) >= 1 and list(pool.columns) == POOL_COLUMNS
    # the same call again is served from the cache
    _, again, _ = generate_synthetic_pool("simprompt", profile, real, prompts, generation, llm, 42)
    assert again["calls"] == 0 and again["cache_hits"] == 1


def test_a_method_that_keeps_too_little_fails_the_node(inputs, tmp_path):
    """An endpoint that answers junk to every call: the node raises, naming the method, the counts and the
    most common rejection, instead of writing an empty pool that later nodes would turn into "results"."""
    real, batches, profile, params = inputs
    llm = {**params["llm"], "cache_dir": str(tmp_path / "cache"), "show_progress": False, "max_retries": 0}
    with ScriptedLLMServer(script=["garbage"] * 10) as server:
        llm.update(base_url=server.url, structured_output="json_object")
        with pytest.raises(GenerationShortfallError) as error:
            generate_synthetic_pool(
                "simprompt", profile, real, select_prompts("sst2", params),
                {**params["generation"], "min_kept_share": 0.5}, llm, 42,
            )
    message = str(error.value)
    assert "'simprompt' kept 0 of 8 requested samples" in message and "generation.min_kept_share=" in message
    assert re.search(r"most common rejection \((\d+) of \1 failed calls\)", message), message  # every call failed
    assert "cut off" not in message  # short junk is not a token-cap problem


def test_answers_cut_off_at_max_tokens_are_counted_and_named(inputs, tmp_path):
    """Answers that use all of llm.max_tokens (long texts, many per call: Amazon reviews at 640 tokens) are
    counted in the usage report, and a shortfall says which setting to change."""
    real, batches, profile, params = inputs
    llm = {**params["llm"], "cache_dir": str(tmp_path / "cache"), "show_progress": False, "max_retries": 0}
    llm["max_tokens"] = 96
    with ScriptedLLMServer(script=["truncated"] * 10) as server:  # JSON cut off at the request's max_tokens
        llm.update(base_url=server.url, structured_output="json_object")
        with pytest.raises(GenerationShortfallError) as error:
            generate_synthetic_pool(
                "simprompt", profile, real, select_prompts("sst2", params),
                {**params["generation"], "min_kept_share": 0.5}, llm, 42,
            )
    assert "answers were cut off at llm.max_tokens=96: raise llm.max_tokens or lower generation.n_per_call" in str(
        error.value
    )
    # below the cap nothing is counted as cut off
    generation = {**params["generation"], "min_kept_share": 0.0}
    with ScriptedLLMServer() as server:
        llm.update(base_url=server.url, cache_dir=str(tmp_path / "cache2"), max_tokens=4000)
        _, usage, _ = generate_synthetic_pool("simprompt", profile, real, select_prompts("sst2", params), generation, llm, 42)
    assert usage["truncated"] == 0 and usage["max_tokens"] == 4000 and usage["calls"] > 0


def test_a_profile_of_long_texts_raises_max_tokens_for_its_generation_calls(inputs, tmp_path):
    """``llm_max_tokens`` in the data set's profile (Amazon: 1400) is what the generation requests ask for when
    llm.max_tokens is lower; a larger llm.max_tokens (``--params llm.max_tokens=...``) is kept."""
    real, batches, profile, params = inputs
    generation = {**params["generation"], "min_kept_share": 0.0}
    llm = {**params["llm"], "show_progress": False, "max_tokens": 96}
    asked = {}
    for name, llm_max_tokens, cap in [("raised", 1400, 96), ("kept", 1400, 4000), ("none", None, 96)]:
        with ScriptedLLMServer() as server:
            run_llm = {**llm, "base_url": server.url, "cache_dir": str(tmp_path / name), "max_tokens": cap}
            _, usage, _ = generate_synthetic_pool(
                "simprompt", {**profile, "llm_max_tokens": llm_max_tokens}, real, select_prompts("sst2", params),
                generation, run_llm, 42,
            )
        asked[name] = ({call["max_tokens"] for call in server.calls}, usage["max_tokens"])
    assert asked == {"raised": ({1400}, 1400), "kept": ({4000}, 4000), "none": ({96}, 96)}


def test_the_shipped_amazon_profile_raises_max_tokens():
    params = load_parameters("base")
    assert params["dataset_amazon_category"]["llm_max_tokens"] > params["llm"]["max_tokens"]
    assert "llm_max_tokens" not in params["dataset_sst2"] and "llm_max_tokens" not in params["dataset_ag_news"]
