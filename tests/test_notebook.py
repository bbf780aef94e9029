"""notebooks/explore_run.ipynb executes top to bottom (nbclient, a real ipykernel) against the outputs of a
`kedro run --env test`, as a user opens it: from the project's notebooks/ folder, with KEDRO_ENV=test so that
`%load_ext kedro.ipython` loads the test env."""

from __future__ import annotations

import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.browser_helpers import PROJECT_ROOT, finished_test_run

pytestmark = pytest.mark.slow

NOTEBOOK = PROJECT_ROOT / "notebooks" / "explore_run.ipynb"


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    return finished_test_run(tmp_path_factory.getbasetemp() / "shared_test_run")


def test_the_exploration_notebook_runs_against_a_test_run(finished_run, monkeypatch):
    notebooks = finished_run.root / "notebooks"
    notebooks.mkdir(exist_ok=True)
    notebook_path = notebooks / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, notebook_path)
    notebook = nbformat.read(notebook_path, as_version=4)

    # The kernel inherits this process's environment: the project's env for kedro.ipython, no telemetry.
    monkeypatch.setenv("KEDRO_ENV", finished_run.env)
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(notebooks)}}
    )
    client.execute(cwd=str(notebooks))  # raises CellExecutionError with the cell and traceback on any error
    nbformat.write(notebook, notebook_path)  # the executed notebook stays with the run, for a look

    outputs = {
        index: "".join(
            output.get("text", "") + "".join(str(v) for v in output.get("data", {}).values())
            for output in cell.get("outputs", [])
        )
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
    }
    errors = [
        o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert errors == []
    text = "\n".join(outputs.values())
    assert '"mlflow_run_id"' in text  # the manifest of the run
    assert "DIFFERS" not in text and text.count(" ok") >= 5  # the manifest's hashes are those on disk
    assert "control rows," in text and "treatment rows" in text
    assert "ab." in text or "privacy." in text  # the run's metrics read back from MLflow
    assert "<h1>" in outputs[max(outputs)]  # the run report, rendered inline
    assert os.path.exists(finished_run.mlflow_db)
