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
    train = pd.read_parquet(train_file)
    assert list(train.columns) == ["row_id", "text", "label"] and len(train) == 2000
    report = json.loads((project / "data/test_env/08_reporting/ingestion_report.json").read_text())
    assert report["dataset"] == "sst2" and report["train"]["rows_kept"] == 2000
    outputs = [
        project / "data/test_env/02_intermediate/dataset_profile.json",
        train_file,
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
    assert len(pd.read_parquet(train_file)) == 2000
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


def test_dataset_switch_and_unknown_dataset(project):
    run_kedro(project, pipeline="ingestion", params={"dataset": "ag_news"})
    labels = set(pd.read_parquet(project / "data/test_env/03_primary/real_train.parquet")["label"])
    assert labels == {"World", "Sports", "Business", "Sci/Tech"}
    with pytest.raises(IngestionError, match=r"unknown dataset 'imdb'.*parameters_dataset_imdb\.yml"):
        run_kedro(project, pipeline="ingestion", params={"dataset": "imdb"})
    assert os.path.exists(project / "data/test_env/03_primary/real_train.parquet")
