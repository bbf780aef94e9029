"""Every dataset write is atomic: a run killed (SIGKILL) during a save, or a save that fails, leaves each output
as the old complete file or the new complete file, and a node's outputs change together (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog
from kedro.io.core import Version
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset
from kedro_datasets.pandas import JSONDataset as PandasJSONDataset
from kedro_datasets.text import TextDataset

import synalign_kedro
from synalign_kedro.atomic_writes import AtomicWritesHook, make_atomic
from synalign_kedro.datasets import NumpyDataset
from tests.kedro_helpers import run_kedro, scratch_project

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FRAME = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
FIGURE = object()  # stands for a fresh matplotlib figure per save


def figure():
    fig = plt.figure()
    plt.plot([0, 1], [1, 0])
    return fig


@pytest.mark.parametrize(
    ("make_dataset", "data"),
    [
        (lambda p: ParquetDataset(filepath=str(p / "t.parquet")), FRAME),
        (lambda p: CSVDataset(filepath=str(p / "t.csv")), FRAME),
        (lambda p: PandasJSONDataset(filepath=str(p / "t.json")), FRAME),
        (lambda p: JSONDataset(filepath=str(p / "t.json")), {"a": [1, 2]}),
        (lambda p: TextDataset(filepath=str(p / "t.txt")), "some text"),
        (lambda p: MatplotlibDataset(filepath=str(p / "t.png")), FIGURE),
        (lambda p: NumpyDataset(filepath=str(p / "t.npy")), np.arange(5.0)),
    ],
    ids=["parquet", "csv", "pandas-json", "json", "text", "matplotlib", "numpy"],
)
def test_each_dataset_kind_replaces_its_file_by_rename(tmp_path, make_dataset, data):
    dataset = make_dataset(tmp_path / "out")
    make_atomic(dataset)
    dataset.save(figure() if data is FIGURE else data)
    target = next((tmp_path / "out").iterdir())
    inode = target.stat().st_ino
    dataset.save(figure() if data is FIGURE else data)
    assert target.stat().st_ino != inode  # a new file renamed over the target, not the old one rewritten
    assert [p.name for p in (tmp_path / "out").iterdir()] == [target.name]  # no temp file left
    if data is not FIGURE:
        loaded = dataset.load()
        if isinstance(data, pd.DataFrame):
            pd.testing.assert_frame_equal(loaded, data)
        elif isinstance(data, np.ndarray):
            np.testing.assert_array_equal(loaded, data)
        else:
            assert loaded == data


def test_versioned_dataset_writes_a_complete_version(tmp_path):
    dataset = ParquetDataset(filepath=str(tmp_path / "v.parquet"), version=Version(None, None))
    make_atomic(dataset)
    dataset.save(FRAME)
    files = sorted(p.relative_to(tmp_path).parts[-1] for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["v.parquet"]
    pd.testing.assert_frame_equal(dataset.load(), FRAME)


def test_a_save_that_fails_half_way_keeps_the_old_file(tmp_path):
    dataset = JSONDataset(filepath=str(tmp_path / "a.json"))
    dataset.save({"run": 1})
    make_atomic(dataset)
    with pytest.raises(Exception, match="not JSON serializable"):
        dataset.save({"run": 2, "bad": object()})  # json.dump fails after writing part of the file
    assert json.loads((tmp_path / "a.json").read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def three_outputs(bad: bool):
    return {"run": 2}, FRAME.assign(run=2), ({"run": 2, "bad": object()} if bad else {"run": 2})


def test_a_node_whose_last_save_fails_changes_none_of_its_outputs(tmp_path):
    catalog = DataCatalog(
        {
            "first": JSONDataset(filepath=str(tmp_path / "first.json")),
            "second": ParquetDataset(filepath=str(tmp_path / "second.parquet")),
            "third": JSONDataset(filepath=str(tmp_path / "third.json")),
        }
    )
    catalog.save("first", {"run": 1})
    catalog.save("second", FRAME.assign(run=1))
    catalog.save("third", {"run": 1})
    targets = ["first.json", "second.parquet", "third.json"]
    before = {name: (tmp_path / name).read_bytes() for name in targets}
    hooks = _create_hook_manager()
    hooks.register(AtomicWritesHook())
    pipeline = Pipeline([Node(three_outputs, "params:bad", ["first", "second", "third"], name="three")])

    catalog["params:bad"] = True
    with pytest.raises(Exception, match="not JSON serializable"):
        SequentialRunner().run(pipeline, catalog, hook_manager=hooks)
    # first and second were saved (to temp files) before third failed, and not renamed
    assert {name: (tmp_path / name).read_bytes() for name in targets} == before

    catalog["params:bad"] = False
    SequentialRunner().run(pipeline, catalog, hook_manager=hooks)
    assert json.loads((tmp_path / "first.json").read_text()) == {"run": 2}
    assert pd.read_parquet(tmp_path / "second.parquet")["run"].tolist() == [2, 2, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == targets  # the failed run's temp files are gone too


# --- kill -9 during a save ---------------------------------------------------------------------------------

OUTPUTS = {
    "dataset_profile.json": "data/test_env/02_intermediate/dataset_profile.json",
    "real_train.parquet": "data/test_env/03_primary/real_train.parquet",
    "real_heldout.parquet": "data/test_env/03_primary/real_heldout.parquet",
    "real_test.parquet": "data/test_env/03_primary/real_test.parquet",
    "ingestion_report.json": "data/test_env/08_reporting/ingestion_report.json",
}

# Loaded by the killed `kedro run` through PYTHONPATH: the first write to the file named PAUSE_TARGET writes half
# of its bytes, flushes them, touches PAUSE_MARKER and sleeps until the test kills the process. It patches the
# lowest write of both code paths: fsspec's LocalFileOpener (kedro-datasets writing in place) and, when present,
# synalign_kedro.atomic_writes.StagedFile (the temp sibling), so the same test runs against code without atomic writes.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    def _patch(cls, path_of):
        original = cls.write

        def write(self, data, *args, **kwargs):
            if Path(str(path_of(self))).name != os.environ["PAUSE_TARGET"]:
                return original(self, data, *args, **kwargs)
            original(self, data[: len(data) // 2])
            self.flush()
            Path(os.environ["PAUSE_MARKER"]).write_text(str(path_of(self)))
            while True:
                time.sleep(1)

        cls.write = write

    if os.environ.get("PAUSE_TARGET"):
        from fsspec.implementations.local import LocalFileOpener

        _patch(LocalFileOpener, lambda f: f.path)
        try:
            from synalign_kedro.atomic_writes import StagedFile
        except ImportError:
            pass
        else:
            _patch(StagedFile, lambda f: f.target)
    """
)


def read_outputs(project: Path) -> dict[str, object]:
    """Each output's content, or why it cannot be read (a truncated or empty file)."""
    contents = {}
    for name, relative in OUTPUTS.items():
        path = project / relative
        try:
            if name.endswith(".parquet"):
                contents[name] = pd.read_parquet(path).to_dict("list")
            else:
                contents[name] = json.loads(path.read_text())
        except Exception as error:
            contents[name] = (
                f"unreadable ({path.stat().st_size if path.exists() else 'no'} bytes): {type(error).__name__}"
            )
    return contents


def test_sigkill_during_each_save_leaves_old_or_new_complete_outputs(tmp_path, monkeypatch):
    base = scratch_project(tmp_path)  # tmp_path / "project"
    monkeypatch.chdir(base)
    run_kedro(base, pipeline="ingestion")  # sst2: the "old" outputs
    old = read_outputs(base)

    hook_dir = tmp_path / "pause_hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    source = Path(synalign_kedro.__file__).resolve().parents[1]  # the code this test runs against
    runs = {}
    # one `kedro run` per save, killed inside that save (the first, the one of the issue, the last); in parallel,
    # each in its own copy of the project
    for target in ("dataset_profile.json", "real_train.parquet", "ingestion_report.json"):
        copy = tmp_path / f"kill_during_{target}"
        subprocess.run(["cp", "-a", str(base), str(copy)], check=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(hook_dir), str(source), os.environ.get("PYTHONPATH", "")]),
            "PAUSE_TARGET": target,
            "PAUSE_MARKER": str(copy / "paused"),
            "DO_NOT_TRACK": "true",
        }
        command = [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--env",
            "test",
            "--pipeline",
            "ingestion",
            "--params",
            "dataset=ag_news",
        ]
        log = open(copy / "run.log", "wb")  # noqa: SIM115 - closed below
        runs[target] = (
            copy,
            log,
            subprocess.Popen(
                command, cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            ),
        )

    deadline = time.monotonic() + 600
    try:
        while not all((copy / "paused").exists() for copy, _, _ in runs.values()):
            for target, (copy, _, process) in runs.items():
                if process.poll() is not None and not (copy / "paused").exists():
                    pytest.fail(
                        f"the run for {target} ended ({process.returncode}) before pausing:\n"
                        + (copy / "run.log").read_text()[-3000:]
                    )
            assert time.monotonic() < deadline, "no run reached its pause point in 10 minutes"
            time.sleep(0.2)
    finally:
        for _, log, process in runs.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            log.close()

    after_kill = {target: read_outputs(copy) for target, (copy, _, _) in runs.items()}
    last = runs["ingestion_report.json"][0]
    monkeypatch.chdir(last)
    run_kedro(last, pipeline="ingestion", params={"dataset": "ag_news"})  # the same run, to completion
    new = read_outputs(last)
    assert new["dataset_profile.json"]["name"] == "ag_news" and new != old
    assert not list(last.glob("data/**/.*.partial"))  # the temp files of the killed run are gone

    for target, contents in after_kill.items():
        for name, content in contents.items():
            assert content in (old[name], new[name]), (
                f"killed while saving {target}: {name} is {str(content)[:200]}"
            )
        # the node's outputs are renamed together after its last save, so a kill during any save keeps them all old
        assert contents == old, f"killed while saving {target}: a mix of old and new outputs"


def test_the_hook_travels_to_another_process_with_a_fresh_lock(tmp_path):
    """A parallel runner (Dask) pickles the project's hooks for its workers; the copy works on its own."""
    import pickle

    hook = AtomicWritesHook()
    hook._warned.add("some_memory_dataset")
    copy = pickle.loads(pickle.dumps(hook))
    assert copy._warned == {"some_memory_dataset"}
    assert copy._lock is not hook._lock and not copy._lock.locked()
    catalog = DataCatalog({"out": CSVDataset(filepath=str(tmp_path / "out.csv"))})
    pipeline = Pipeline([Node(lambda: FRAME, None, "out", name="write")])
    hook_manager = _create_hook_manager()
    hook_manager.register(copy)
    SequentialRunner().run(pipeline, catalog, hook_manager)
    assert pd.read_csv(tmp_path / "out.csv").equals(FRAME)
