"""The `ab_export` pipeline end to end on the project's own catalog entries (paths moved to a temp dir):
manifest hashes match the files written, control has no synthetic row, treatment = control + the variant's
rows minus the flagged ones, a planted copy of a real text is flagged and dropped, the report is written."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import generate_timestamp
from kedro.runner import SequentialRunner

from synalign_kedro.core.embedding import embed_texts
from synalign_kedro.core.plots import figure_png, weights_histogram
from synalign_kedro.core.variants import (
    GENERATION_METHODS,
    SYNTHETIC_VARIANTS,
    usage_dataset,
    variant_dataset,
)
from synalign_kedro.pipelines.ab_export import nodes
from synalign_kedro.pipelines.ab_export.pipeline import create_pipeline
from tests.kedro_helpers import load_parameters

# the figures the report takes from the catalog (PNG bytes written by the plot nodes of this run)
FIGURES = ("coverage_curves_plot", "evaluation_tsne_plot", "alignment_loss_plot", "alignment_weights_plot")

pytestmark = pytest.mark.slow  # loads the embedder once (about 5 s)

# manifest "files" keys (one per versioned export dataset of conf/base/catalog_ab_export.yml)
EXPORT_FILES = ("control_parquet", "control_jsonl", "treatment_parquet", "treatment_jsonl", "privacy_report")


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _catalog_config(project_root: Path, root: Path) -> dict:
    """The project's ab_export catalog with every path under ``root`` and MLflow wrappers unwrapped (no run)."""
    config = yaml.safe_load((project_root / "conf/base/catalog_ab_export.yml").read_text())
    moved = {}
    for name, entry in config.items():
        entry = copy.deepcopy(entry)
        if entry["type"].endswith("MlflowMetricsHistoryDataset"):
            entry = {"type": "kedro.io.MemoryDataset"}
        elif entry["type"].endswith("MlflowArtifactDataset"):
            entry = entry["dataset"]
        if "filepath" in entry:
            entry["filepath"] = str(root / entry["filepath"].replace("${globals:base_location}", "data"))
        moved[name] = entry
    return moved


def _add_params(catalog: DataCatalog, name: str, value) -> None:
    catalog[f"params:{name}"] = MemoryDataset(value)
    if isinstance(value, dict):
        for key, sub in value.items():
            _add_params(catalog, f"{name}.{key}", sub)


@pytest.fixture(scope="module")
def inputs(sst2_train, embedding_cache, project_root):
    """Real SST-2 rows, a synthetic variant built from other SST-2 rows with a planted copy of a real
    training text, and the upstream tables the report reads."""
    texts, labels = sst2_train["text"], sst2_train["label"]
    real_train = pd.DataFrame(
        {
            "row_id": [f"train-{i:04d}" for i in range(150)],
            "text": texts[:150].to_numpy(),
            "label": labels[:150].to_numpy(),
        }
    )
    real_test = pd.DataFrame(
        {
            "row_id": [f"test-{i:04d}" for i in range(100)],
            "text": texts[150:250].to_numpy(),
            "label": labels[150:250].to_numpy(),
        }
    )
    pool = pd.DataFrame(
        {
            "synthetic_id": [f"syn-{i:04d}" for i in range(60)],
            "text": texts[1000:1060].to_numpy(),
            "label": labels[1000:1060].to_numpy(),
            "method": "synalign",
            "batch_id": 0,
            "summary": "",
            "prompt_hash": "h",
            "model": "test",
            "raw_response": "",
            "weight": np.full(60, 1 / 60),
        }
    )
    pool.loc[7, "text"] = real_train.loc[11, "text"]  # the planted copy
    pool.loc[7, "label"] = real_train.loc[11, "label"]
    variant = pool.iloc[::2].reset_index(drop=True)  # the 30 even ids, then the planted copy syn-0007
    variant = pd.concat([variant, pool.iloc[[7]]], ignore_index=True)
    embedding = {
        "model": "all-MiniLM-L6-v2",
        "batch_size": 64,
        "device": "cpu",
        "cache_dir": str(embedding_cache),
    }
    params = load_parameters("test")["ab_export"]
    return {
        "real_train": real_train,
        "real_test": real_test,
        "real_train_embeddings": embed_texts(
            real_train["text"].tolist(), device="cpu", cache_dir=embedding_cache
        ),
        "real_test_embeddings": embed_texts(
            real_test["text"].tolist(), device="cpu", cache_dir=embedding_cache
        ),
        "synthetic_synalign_mmd": variant,
        "synthetic_synalign_all": pool,
        "params": params,
        "embedding": embedding,
    }


def _run(tmp_path: Path, project_root: Path, inputs: dict, params: dict) -> tuple[DataCatalog, dict]:
    catalog = DataCatalog.from_config(
        _catalog_config(project_root, tmp_path), save_version=generate_timestamp()
    )
    for name in (
        "real_train",
        "real_test",
        "real_train_embeddings",
        "real_test_embeddings",
        "synthetic_synalign_mmd",
        "synthetic_synalign_all",
    ):
        catalog[name] = MemoryDataset(inputs[name])
    for dataset in map(variant_dataset, SYNTHETIC_VARIANTS):
        if dataset not in catalog:
            catalog[dataset] = MemoryDataset(inputs["synthetic_synalign_all"].drop(columns="weight").head(5))
    catalog["evaluation_table"] = MemoryDataset(
        pd.DataFrame({"variant": ["gold", "synalign_mmd"], "accuracy": [0.80, 0.82], "mmd": [0.0, 0.01]})
    )
    for name in map(usage_dataset, GENERATION_METHODS):
        catalog[name] = MemoryDataset({"requests": 3, "prompt_tokens": 100, "completion_tokens": 50})
    for index, name in enumerate(FIGURES):  # distinct PNGs, to find each one in the report
        catalog[name] = MemoryDataset(figure_png(weights_histogram(np.arange(1.0, 3.0 + index))), copy_mode="assign")
    _add_params(catalog, "ab_export", params)
    _add_params(catalog, "embedding", inputs["embedding"])
    _add_params(catalog, "seed", 7)
    _add_params(catalog, "dataset", "sst2")
    SequentialRunner().run(create_pipeline(), catalog)
    manifest = json.loads((tmp_path / "data/08_reporting/ab_export/manifest.json").read_text())
    return catalog, manifest


@pytest.fixture(scope="module")
def run(tmp_path_factory, project_root, inputs):
    root = tmp_path_factory.mktemp("ab_export_run")
    params = copy.deepcopy(inputs["params"])
    catalog, manifest = _run(root, project_root, inputs, params)
    return root, catalog, manifest, params


def test_manifest_hashes_match_the_files(run):
    root, catalog, manifest, _ = run
    assert set(manifest["files"]) == set(EXPORT_FILES)
    for key in EXPORT_FILES:
        entry = manifest["files"][key]
        path = Path(entry["path"])
        assert path.is_file(), key
        assert entry["sha256"] == _sha256(path), key
        assert entry["size_bytes"] == path.stat().st_size
        # the versioned layout <name>/<version>/<name>, and it is the version the dataset loads as latest
        assert path.parent.name == entry["version"] and path.parent.parent.name == path.name
        versions = sorted(p.name for p in path.parent.parent.iterdir())
        assert versions[-1] == entry["version"]
    control = pd.read_parquet(manifest["files"]["control_parquet"]["path"])
    assert manifest["files"]["control_parquet"]["rows"] == len(control)
    assert manifest["mlflow_run_id"] is None  # no MLflow run active in this test
    assert manifest["variant"] == "synalign_mmd" and manifest["parameters"]["seed"] == 7
    assert manifest["evaluation"] == {"variant": "synalign_mmd", "accuracy": 0.82, "mmd": 0.01}
    assert manifest["offline_ab"]["n_test"] == 100


def test_control_has_no_synthetic_row_and_matches_real_train(run, inputs):
    _, _, manifest, _ = run
    for key in ("control_parquet", "control_jsonl"):
        path = manifest["files"][key]["path"]
        control = (
            pd.read_parquet(path) if key.endswith("parquet") else pd.read_json(path, lines=True, dtype=False)
        )
        assert (control["source"] == "real").all()
        assert control["example_id"].tolist() == inputs["real_train"]["row_id"].tolist()
    assert manifest["counts"]["control"] == {
        "real": inputs["real_train"]["label"].value_counts().sort_index().to_dict()
    }


def test_treatment_is_control_plus_variant_minus_flagged(run, inputs):
    _, _, manifest, _ = run
    control = pd.read_parquet(manifest["files"]["control_parquet"]["path"])
    treatment = pd.read_parquet(manifest["files"]["treatment_parquet"]["path"])
    treatment_jsonl = pd.read_json(manifest["files"]["treatment_jsonl"]["path"], lines=True, dtype=False)
    assert treatment_jsonl["example_id"].tolist() == treatment["example_id"].tolist()
    flagged = pd.read_csv(manifest["files"]["privacy_report"]["path"], dtype={"synthetic_id": str})
    flagged_ids = set(flagged["synthetic_id"])
    real_part = treatment[treatment["source"] == "real"].reset_index(drop=True)
    pd.testing.assert_frame_equal(real_part, control)
    variant_ids = inputs["synthetic_synalign_mmd"]["synthetic_id"].tolist()
    synthetic_part = treatment[treatment["source"] == "synthetic"]
    assert synthetic_part["origin_id"].tolist() == [i for i in variant_ids if i not in flagged_ids]
    assert (synthetic_part["variant"] == "synalign_mmd").all()
    assert manifest["selection"]["n_flagged_dropped"] == len(flagged_ids)
    assert len(treatment) == len(control) + len(variant_ids) - len(flagged_ids)


def test_planted_copy_is_flagged_and_dropped(run):
    _, _, manifest, _ = run
    flagged = pd.read_csv(manifest["files"]["privacy_report"]["path"], dtype=str, keep_default_na=False)
    planted = flagged[flagged["synthetic_id"] == "syn-0007"]
    assert len(planted) == 1
    assert planted.iloc[0]["exact_copy_of"] == "train-0011"
    assert "exact_copy" in planted.iloc[0]["reasons"]
    treatment = pd.read_parquet(manifest["files"]["treatment_parquet"]["path"])
    assert "syn-0007" not in set(treatment["origin_id"])
    assert manifest["privacy"]["counts"]["exact_copy"] >= 1


def test_run_report_is_written_with_every_section(run):
    root, catalog, manifest, _ = run
    page = (root / "data/08_reporting/run_report.html").read_text()
    for name in FIGURES:  # every figure of this run is inlined, read through the catalog
        assert base64.b64encode(catalog.load(name)).decode("ascii") in page, name
    for text in ("Offline A/B estimate", "Privacy", "LLM accounting", "syn-0007", "not available", "t-SNE"):
        assert text in page
    assert manifest["variant"] in page


def test_a_second_run_writes_a_new_version_and_the_manifest_follows(run, inputs, project_root):
    root, _, first, params = run
    _, second = _run(root, project_root, inputs, params)
    for key in EXPORT_FILES:
        assert second["files"][key]["version"] != first["files"][key]["version"]
        assert second["files"][key]["sha256"] == _sha256(second["files"][key]["path"])
        assert Path(first["files"][key]["path"]).is_file()  # older versions are kept


def test_select_variant_rejects_an_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        nodes.select_variant({"variant": "nope"}, synalign_mmd=pd.DataFrame())


def test_notebook_is_valid_and_loads_the_catalog(project_root):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(project_root / "notebooks/explore_run.ipynb", as_version=4)
    nbformat.validate(notebook)
    sources = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "%load_ext kedro.ipython" in sources
    assert 'catalog.load("ab_export_manifest")' in sources


def test_an_empty_variant_is_an_error_not_a_treatment_equal_to_control():
    with pytest.raises(ValueError, match="the synthetic set of ab_export.variant 'synalign_mmd' is empty"):
        nodes.select_variant({"variant": "synalign_mmd"}, synalign_mmd=pd.DataFrame({"text": []}))
