"""The parameter settings models (core/parameters.py): conf/base repeats their defaults (one source of
truth), conf/test only overrides, and a bad value fails before the first node with the parameter's name."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, MemoryDataset

from synalign_kedro.core.parameters import PARAMETER_BLOCKS, ParameterError, validate_parameters
from synalign_kedro.hooks import ParameterValidationHook
from tests.kedro_helpers import load_parameters

# The LLM block's model belongs to core/llm_client.py; its YAML defaults are kept by that module's owner.
OWN_BLOCKS = sorted(set(PARAMETER_BLOCKS) - {"llm"})


@pytest.mark.parametrize("block", OWN_BLOCKS)
def test_conf_base_repeats_the_model_defaults(block):
    """The rule: conf/base states every default of the model, with the same value (so YAML documents the
    defaults and the model is the one place they are defined)."""
    model = PARAMETER_BLOCKS[block]
    assert model.model_validate(load_parameters("base")[block]) == model()


@pytest.mark.parametrize("env", ["base", "test"])
def test_every_shipped_environment_validates(env):
    validated = validate_parameters(load_parameters(env))
    assert set(PARAMETER_BLOCKS) <= set(validated)


def test_conf_test_only_overrides_and_the_rest_comes_from_base():
    base, test = load_parameters("base"), load_parameters("test")
    assert test["generation"]["n_samples"] == 8 and test["seed"] == 7
    assert test["generation"]["salvage_partial"] == base["generation"]["salvage_partial"]  # soft merge
    assert test["exploration"]["tracker"]["kernel"] == base["exploration"]["tracker"]["kernel"]


def test_a_runtime_override_keeps_the_rest_of_the_block():
    params = load_parameters("test", runtime_params={"generation": {"n_samples": 3}})
    assert params["generation"]["n_samples"] == 3 and params["generation"]["n_per_call"] == 4


def test_bad_values_are_reported_by_their_full_name():
    params = load_parameters("test")
    params["seed"] = "abc"
    params["exploration"]["tracker"]["kk"] = 3
    params["evaluation"]["classifier"] = "svm"
    with pytest.raises(ParameterError) as error:
        validate_parameters(params)
    message = str(error.value)
    assert "seed: Input should be a valid integer" in message and "(got 'abc')" in message
    assert "exploration.tracker.kk: Extra inputs are not permitted" in message
    assert "evaluation.classifier: Input should be 'logistic_regression' or 'finetune'" in message


def test_the_hook_validates_before_the_first_node():
    params = {**load_parameters("test"), "seed": "abc"}
    catalog = DataCatalog({"parameters": MemoryDataset(params)})
    with pytest.raises(ParameterError, match="seed"):
        ParameterValidationHook().before_pipeline_run(run_params={}, pipeline=None, catalog=catalog)
    catalog = DataCatalog({"parameters": MemoryDataset(load_parameters("test"))})
    ParameterValidationHook().before_pipeline_run(run_params={}, pipeline=None, catalog=catalog)


@pytest.mark.parametrize("env", ["base", "test"])
def test_every_shipped_dataset_profile_validates_and_holds_data_out(env):
    """The profiles repeat DatasetProfile's held-out default: 20 % of each class of train is never fitted on."""
    from synalign_kedro.pipelines.ingestion.nodes import DatasetProfile, resolve_dataset_profile

    params = load_parameters(env)
    names = sorted(key.removeprefix("dataset_") for key in params if key.startswith("dataset_"))
    assert {"sst2", "ag_news", "amazon_category"} <= set(names)
    for name in names:
        profile = resolve_dataset_profile(name, params)
        assert profile["heldout_share"] == params[f"dataset_{name}"]["heldout_share"] == 0.2, name
    assert DatasetProfile.model_fields["heldout_share"].default == 0.2
