"""The ingestion pipeline through a real KedroSession: outputs land in the catalog; bad input loses nothing."""

from __future__ import annotations

import json
import os
import re

import pandas as pd
import pytest

from synalign_kedro.core.ingestion import IngestionError
from synalign_kedro.core.parameters import ParameterError
from tests.kedro_helpers import run_kedro, scratch_project


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = scratch_project(tmp_path)
    monkeypatch.chdir(root)
    return root


def test_ingestion_run_then_bad_input_keeps_earlier_outputs(project):
    run_kedro(project, pipeline="ingestion")
    train_file = project / "data/test_env/03_primary/real_train.parquet"
    heldout_file = project / "data/test_env/03_primary/real_heldout.parquet"
    train, heldout = pd.read_parquet(train_file), pd.read_parquet(heldout_file)
    test = pd.read_parquet(project / "data/test_env/03_primary/real_test.parquet")
    assert list(train.columns) == list(heldout.columns) == ["row_id", "text", "label"]
    # 2,000 cleaned train rows: 20 % of each class held out (heldout_share: 0.2 in the sst2 profile)
    assert len(train) == 1600 and len(heldout) == 400
    counts, held = train["label"].value_counts(), heldout["label"].value_counts()
    assert set(held.index) == set(counts.index)
    for label in counts.index:
        assert held[label] == round(0.2 * (held[label] + counts[label])), label
    assert not set(heldout["row_id"]) & set(train["row_id"]) and not set(heldout["text"]) & set(train["text"])
    assert not set(heldout["text"]) & set(test["text"])
    report = json.loads((project / "data/test_env/08_reporting/ingestion_report.json").read_text())
    assert report["dataset"] == "sst2" and report["train"]["rows_kept"] == 1600
    assert report["heldout"]["rows_kept"] == 400 and report["heldout"]["label_counts"] == held.sort_index().to_dict()
    outputs = [
        project / "data/test_env/02_intermediate/dataset_profile.json",
        train_file,
        heldout_file,
        project / "data/test_env/03_primary/real_test.parquet",
        project / "data/test_env/08_reporting/ingestion_report.json",
    ]
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in outputs}

    bad = project / "data/01_raw/bad.csv"
    bad.write_text("text,label\ngreat,positive\nawful,\n", encoding="utf-8")
    (project / "conf/test/parameters_dataset_bad.yml").write_text(
        "dataset_bad:\n  train_path: data/01_raw/bad.csv\n  test_path: null\n  text_column: text\n  label_column: label\n"
    )
    with pytest.raises(
        IngestionError, match=r"bad\.csv: column 'label' has no label on 1 row\(s\): data rows 2"
    ):
        run_kedro(project, pipeline="ingestion", params={"dataset": "bad"})
    # no output is touched, the profile included (it was saved by a node of its own before issue 11)
    assert {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in outputs} == before
    assert json.loads(outputs[0].read_text())["name"] == "sst2"
    assert len(pd.read_parquet(train_file)) == 1600 and len(pd.read_parquet(heldout_file)) == 400
    assert not list(project.glob("data/**/.*.partial"))


def test_profile_and_seed_are_validated(project):
    (project / "conf/test/parameters_dataset_typo.yml").write_text(
        "dataset_typo:\n  train_path: data/01_raw/sst2/train.csv\n  text_column: text\n  label_column: label\n"
        "  test_sise: 0.3\n  test_size: 2\n"
    )
    message = (
        "dataset profile 'dataset_typo' is invalid: test_size: Input should be less than 1 (got 2); "
        "test_sise: Extra inputs are not permitted (got 0.3)"
    )
    with pytest.raises(IngestionError, match=re.escape(message)):
        run_kedro(project, pipeline="ingestion", params={"dataset": "typo"})
    # the parameter hook validates every block before the first node runs (core/parameters.py)
    with pytest.raises(ParameterError, match=re.escape("seed: Input should be a valid integer")):
        run_kedro(project, pipeline="ingestion", params={"seed": "abc"})
    assert not (project / "data/test_env/02_intermediate/dataset_profile.json").exists()


def test_a_class_too_small_to_hold_out_writes_nothing(project):
    (project / "data/01_raw/small.csv").write_text(
        "text,label\n" + "".join(f"good {i},pos\n" for i in range(5)) + "".join(f"bad {i},neg\n" for i in range(5))
        + "rare one,rare\n",
        encoding="utf-8",
    )
    (project / "data/01_raw/small_test.csv").write_text("text,label\nnew good,pos\nnew bad,neg\nnew rare,rare\n")
    (project / "conf/test/parameters_dataset_small.yml").write_text(
        "dataset_small:\n  train_path: data/01_raw/small.csv\n  test_path: data/01_raw/small_test.csv\n"
        "  text_column: text\n  label_column: label\n"
    )
    with pytest.raises(IngestionError, match=r"small\.csv: cannot hold out heldout_share=0\.2 .*'rare': 1 train row"):
        run_kedro(project, pipeline="ingestion", params={"dataset": "small"})
    assert not (project / "data/test_env/03_primary").exists()
    # heldout_share: 0 holds nothing out (the profile accepts [0, 1)); the class then ingests with a warning
    with open(project / "conf/test/parameters_dataset_small.yml", "a") as profile:
        profile.write("  heldout_share: 0\n")
    run_kedro(project, pipeline="ingestion", params={"dataset": "small"})
    assert pd.read_parquet(project / "data/test_env/03_primary/real_heldout.parquet").empty
    assert len(pd.read_parquet(project / "data/test_env/03_primary/real_train.parquet")) == 11


def test_dataset_switch_and_unknown_dataset(project):
    run_kedro(project, pipeline="ingestion", params={"dataset": "ag_news"})
    labels = set(pd.read_parquet(project / "data/test_env/03_primary/real_train.parquet")["label"])
    assert labels == {"World", "Sports", "Business", "Sci/Tech"}
    with pytest.raises(IngestionError, match=r"unknown dataset 'imdb'.*parameters_dataset_imdb\.yml"):
        run_kedro(project, pipeline="ingestion", params={"dataset": "imdb"})
    assert os.path.exists(project / "data/test_env/03_primary/real_train.parquet")


def test_heldout_share_is_validated_in_the_profile():
    from synalign_kedro.pipelines.ingestion.nodes import resolve_dataset_profile

    profile = {"train_path": "a.csv", "text_column": "text", "label_column": "label"}
    assert resolve_dataset_profile("x", {"dataset_x": profile})["heldout_share"] == 0.2
    assert resolve_dataset_profile("x", {"dataset_x": {**profile, "heldout_share": 0}})["heldout_share"] == 0
    for value, problem in ((1, "less than 1"), (-0.1, "greater than or equal to 0")):
        with pytest.raises(IngestionError, match=re.escape(f"heldout_share: Input should be {problem} (got {value})")):
            resolve_dataset_profile("x", {"dataset_x": {**profile, "heldout_share": value}})


def test_llm_max_tokens_is_validated_in_the_profile():
    from synalign_kedro.pipelines.ingestion.nodes import resolve_dataset_profile

    profile = {"train_path": "a.csv", "text_column": "text", "label_column": "label"}
    assert resolve_dataset_profile("x", {"dataset_x": profile})["llm_max_tokens"] is None
    assert resolve_dataset_profile("x", {"dataset_x": {**profile, "llm_max_tokens": 1400}})["llm_max_tokens"] == 1400
    with pytest.raises(IngestionError, match=re.escape("llm_max_tokens: Input should be greater than or equal to 1 (got 0)")):
        resolve_dataset_profile("x", {"dataset_x": {**profile, "llm_max_tokens": 0}})
