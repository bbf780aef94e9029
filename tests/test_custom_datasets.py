"""The project's custom Kedro datasets: PngDataset and FileDigestDataset (pipelines/datasets.py), and
NumpyDataset (datasets.py): round trips, atomic saves, clear errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version, generate_timestamp

from synalign_kedro.core.plots import figure_png, weights_histogram
from synalign_kedro.datasets import NumpyDataset
from synalign_kedro.pipelines.datasets import FileDigestDataset, PngDataset


def test_png_dataset_round_trip_and_atomic_save(tmp_path):
    png = figure_png(weights_histogram([0.2, 0.3, 0.5]))
    dataset = PngDataset(filepath=str(tmp_path / "figures" / "weights.png"))
    assert not dataset.exists()
    dataset.save(png)
    assert dataset.load() == png and dataset.exists()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["weights.png"]  # no partial file left


def test_png_dataset_refuses_what_is_not_a_png(tmp_path):
    dataset = PngDataset(filepath=str(tmp_path / "x.png"))
    with pytest.raises(DatasetError, match="expected PNG bytes"):
        dataset.save(b"not a png")
    with pytest.raises(DatasetError, match="does not exist"):
        dataset.load()
    assert not (tmp_path / "x.png").exists()


def test_files_marked_as_mlflow_artifacts_are_found_for_the_hook(tmp_path):
    from synalign_kedro.hooks import artifact_file

    catalog = DataCatalog.from_config(
        {
            "plot": {
                "type": "synalign_kedro.pipelines.datasets.PngDataset",
                "filepath": str(tmp_path / "p.png"),
                "metadata": {"mlflow_artifact_path": "evaluation"},
            },
            "plain": {"type": "synalign_kedro.pipelines.datasets.PngDataset", "filepath": str(tmp_path / "q.png")},
        }
    )
    assert artifact_file(catalog, "plot") is None  # not written yet
    png = figure_png(weights_histogram([1.0]))
    catalog.save("plot", png)
    catalog.save("plain", png)
    assert artifact_file(catalog, "plot") == (tmp_path / "p.png", "evaluation")
    assert artifact_file(catalog, "plain") is None and artifact_file(catalog, "missing") is None


def test_file_digest_dataset_hashes_the_version_saved_in_this_run(tmp_path):
    save_version = generate_timestamp()
    target = tmp_path / "export.bin"
    written = target / save_version / "export.bin"
    written.parent.mkdir(parents=True)
    written.write_bytes(b"exported bytes")
    digest = FileDigestDataset(filepath=str(target), version=Version(None, save_version)).load()
    assert digest == {
        "path": written.as_posix(),
        "version": save_version,
        "sha256": hashlib.sha256(b"exported bytes").hexdigest(),
        "size_bytes": 14,
    }
    with pytest.raises(DatasetError, match="read-only"):
        FileDigestDataset(filepath=str(target)).save({})


def test_file_digest_dataset_of_a_missing_file_names_it(tmp_path):
    dataset = FileDigestDataset(filepath=str(tmp_path / "missing.csv"))
    assert not dataset.exists()
    with pytest.raises(DatasetError, match="missing.csv does not exist"):
        dataset.load()


def test_numpy_dataset_round_trip(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    dataset = NumpyDataset(filepath=str(tmp_path / "sub" / "a.npy"))
    dataset.save(array)
    np.testing.assert_array_equal(dataset.load(), array)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.npy"]
    with pytest.raises(DatasetError, match="does not exist"):
        NumpyDataset(filepath=str(tmp_path / "none.npy")).load()


def test_mlflow_metrics_keeps_finite_numbers_and_histories_only():
    from synalign_kedro.pipelines.tracking import mlflow_metrics

    metrics = mlflow_metrics(
        {
            "calls": 4,
            "loss": float("nan"),
            "flag": True,
            "model": "m",
            "failures": [{"task_id": "t", "error": "e"}],  # a usage report's list of dicts: not a history
            "curve": [(1, 0.5), (2, float("inf")), (3, 0.7)],
            "stages": {"generate": {"calls": 4}},
        }
    )
    assert metrics == {
        "calls": {"value": 4.0, "step": 0},
        "curve": [{"value": 0.5, "step": 1}, {"value": 0.7, "step": 3}],
    }
