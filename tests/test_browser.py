"""What a user sees, checked in a real browser (Debian's headless Chromium, driven by Playwright):

- kedro-viz served on 127.0.0.1 lists every registered pipeline and shows the namespaced methods;
- the MLflow UI lists the runs of the test experiment, a run's metrics and (once the LLM client records them)
  its traces;
- the run report renders with every figure (no broken image).

Each check keeps a screenshot under the test's tmp dir; `SYNALIGN_SCREENSHOTS=docs/img pytest
tests/test_browser.py` also copies them to docs/img/ (the README's pictures). The servers run in their own
process group and are stopped as a group; the tests check that nothing of them is left.
"""

from __future__ import annotations

import re

import pytest
from mlflow import MlflowClient

from tests.browser_helpers import (
    CHROMIUM_FLAGS,
    VENV_BIN,
    VIEWPORT,
    Server,
    chromium_path,
    finished_test_run,
    free_port,
    keep_screenshot,
)
from tests.kedro_helpers import scratch_project

pytestmark = pytest.mark.slow

UI_TIMEOUT_MS = 90_000  # the first render of a page on a loaded 2-core machine can take tens of seconds


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per module (module scope: Playwright's event loop must not outlive these tests)."""
    executable = chromium_path()  # skips with the reason when chromium cannot be installed
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    yield page
    context.close()


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    return finished_test_run(tmp_path_factory.getbasetemp() / "shared_test_run")


def texts(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "elements => elements.map(e => e.textContent.trim())")


# --------------------------------------------------------------------------------------------- kedro-viz
def registered_pipelines(root) -> dict:
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(root)
    return dict(pipelines)


def top_namespaces(pipeline) -> set[str]:
    return {node.namespace.split(".")[0] for node in pipeline.nodes if node.namespace}


def test_kedro_viz_shows_every_pipeline_and_the_namespaced_methods(page, tmp_path):
    root = scratch_project(tmp_path)
    expected = registered_pipelines(root)
    generation_methods = top_namespaces(expected["generation"])
    assert {"simprompt", "attrprompt", "synalign_one_stage", "synalign"} <= generation_methods
    port = free_port()
    viz = Server(
        [str(VENV_BIN / "kedro"), "viz", "run", "--no-browser", "--host", "127.0.0.1", "--port", str(port)],
        url=f"http://127.0.0.1:{port}/api/main",
        cwd=root,
        log=tmp_path / "kedro_viz.log",
    )
    with viz:
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector(".pipeline-flowchart .pipeline-node")
        dismiss_kedro_viz_hints(page)

        # every registered pipeline is an option of the pipeline menu
        assert sorted(texts(page, ".pipeline-list .menu-option__content")) == sorted(expected)
        # the sidebar's tree lists the namespaces (methods and variants) of the default pipeline
        sidebar_namespaces = page.eval_on_selector_all(
            ".pipeline-nodelist .pipeline-node-icon--icon-modularPipeline",
            "icons => icons.map(i => i.closest('.MuiTreeItem-content, li').textContent.trim())",
        )
        assert sorted(sidebar_namespaces) == sorted(top_namespaces(expected["__default__"]))

        # choose the generation pipeline as a user does: its methods side by side, as collapsed namespaces
        page.click(".pipeline-list .dropdown__label")
        page.click(".pipeline-list .menu-option__content >> text='generation'")
        page.wait_for_function(
            """expected => {
                const shown = [...document.querySelectorAll(
                    '.pipeline-flowchart .pipeline-node--modularPipeline .pipeline-node__text')].map(e => e.textContent.trim());
                return shown.length === expected.length && expected.every(name => shown.includes(name));
            }""",
            arg=sorted(generation_methods),
        )
        assert page.text_content(".pipeline-list .dropdown__label").strip() == "generation"
        # a picture where the methods are readable: wider window, no minimap (it covers part of the graph),
        # fit then one step of zoom in, the pointer on an empty part of the graph (no hover highlight or tooltip)
        page.set_viewport_size({"width": 1800, "height": 820})
        page.click(".pipeline-minimap-button--map")
        page.click(".pipeline-minimap-button--reset")
        page.wait_for_timeout(1000)  # the zoom-to-fit animation
        page.click(".pipeline-minimap-button--zoom-in")
        page.mouse.move(1200, 780)
        page.wait_for_timeout(4000)  # the zoom animation, and the "revisit these hints" toast fading out
        if dismiss_kedro_viz_hints(page):  # the feature tour can open late, over the graph
            page.wait_for_timeout(5000)  # its "revisit these hints" toast fading out
        screenshot = tmp_path / "kedro_viz.png"
        page.screenshot(path=str(screenshot))
    assert not viz.group_alive(), "kedro-viz left processes behind"
    keep_screenshot(screenshot, "kedro_viz.png")


def dismiss_kedro_viz_hints(page) -> bool:
    """kedro-viz 12 opens a feature tour and a "Kedro-Viz ... is here!" banner on a fresh profile; True when
    something was closed (a "revisit these hints" toast then shows for a few seconds)."""
    closed = False
    for selector in (".feature-hints__close", "button:has-text('Dismiss')"):
        if page.locator(selector).count():
            page.locator(selector).first.click()
            closed = True
    return closed


# --------------------------------------------------------------------------------------------- MLflow UI
def close_mlflow_assistant(page) -> None:
    """MLflow 3.17 opens its Assistant panel beside every page; close it for an uncluttered screenshot."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


@pytest.fixture(scope="module")
def mlflow_ui(finished_run, tmp_path_factory):
    port = free_port()
    command = [
        str(VENV_BIN / "mlflow"), "ui", "--backend-store-uri", finished_run.tracking_uri,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    server = Server(
        command,
        url=f"http://127.0.0.1:{port}/health",
        cwd=finished_run.root,
        log=tmp_path_factory.mktemp("mlflow_ui") / "mlflow_ui.log",
        ready_timeout_s=180,
        env={
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"
        },  # no job consumers: starts faster, fewer processes
    )
    with server:
        yield f"http://127.0.0.1:{port}"
    assert not server.group_alive(), "mlflow ui left processes behind"


def test_the_mlflow_ui_lists_the_runs_and_a_runs_metrics(page, finished_run, mlflow_ui, tmp_path):
    client = MlflowClient(tracking_uri=finished_run.tracking_uri)
    experiment = client.get_experiment_by_name(finished_run.experiment_name)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    assert runs and all(run.info.status == "FINISHED" for run in runs)

    page.goto(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs")
    page.get_by_text(re.compile(rf"^{len(runs)} matching runs?$")).wait_for()
    for run in runs:  # the count renders before the rows: wait for each run's name
        page.get_by_text(run.info.run_name, exact=True).first.wait_for()

    # the whole-project run (named after its pipeline); a later `--pipeline generation` run may share the store
    latest = next((run for run in runs if run.info.run_name == "__default__"), runs[0])
    metrics = latest.data.metrics
    page.goto(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs/{latest.info.run_id}")
    page.get_by_text(f"Metrics ({len(metrics)})", exact=True).wait_for()
    close_mlflow_assistant(page)
    page.get_by_placeholder(re.compile("Search metrics", re.I)).fill("evaluation_metrics.gold.accuracy")
    page.get_by_text("evaluation_metrics.gold.accuracy", exact=True).first.wait_for()
    body = page.inner_text("body")
    after_name = body[body.index("evaluation_metrics.gold.accuracy") :][:120]
    assert str(metrics["evaluation_metrics.gold.accuracy"])[:5] in after_name  # the value beside the name
    screenshot = tmp_path / "mlflow_ui.png"
    page.get_by_placeholder(re.compile("Search metrics", re.I)).fill(
        "evaluation_metrics."
    )  # the headline table
    page.get_by_text("evaluation_metrics.synalign_mmd.accuracy", exact=True).first.wait_for()
    page.screenshot(path=str(screenshot))
    keep_screenshot(screenshot, "mlflow_ui.png")


def test_the_mlflow_ui_shows_the_runs_llm_traces(page, finished_run, mlflow_ui, tmp_path):
    client = MlflowClient(tracking_uri=finished_run.tracking_uri)
    experiment = client.get_experiment_by_name(finished_run.experiment_name)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    run = next((run for run in runs if run.info.run_name == "__default__"), runs[0])
    traces = client.search_traces(
        locations=[experiment.experiment_id], run_id=run.info.run_id, max_results=500
    )
    if not traces:
        pytest.skip(
            "the test run recorded no trace: core/llm_client.py does not call llm_tracing.trace_llm_call yet"
        )
    trace_ids = {trace.info.trace_id for trace in traces}
    page.goto(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}/traces")
    page.get_by_text(
        re.compile(rf"^\d+ of {len(traces)}$")
    ).wait_for()  # "20 of 57": rows shown / the run's traces
    shown = set(re.findall(r"tr-[0-9a-f]{32}", page.inner_text("body")))
    assert shown and shown <= trace_ids
    close_mlflow_assistant(page)
    screenshot = tmp_path / "mlflow_traces.png"
    page.screenshot(path=str(screenshot))
    keep_screenshot(screenshot, "mlflow_traces.png")


# --------------------------------------------------------------------------------------------- run report
def test_the_run_report_renders_every_figure(page, finished_run, tmp_path):
    html = finished_run.run_report.read_text()
    n_images = html.count("<img ")
    assert n_images >= 3
    page.goto(finished_run.run_report.as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "img",
        "images => images.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))",
    )
    assert len(images) == n_images
    broken = [
        image["alt"]
        for image in images
        if not (image["complete"] and image["width"] > 0 and image["height"] > 0)
    ]
    assert broken == []
    assert page.eval_on_selector_all("h2", "hs => hs.length") >= 3
    screenshot = tmp_path / "run_report.png"
    page.screenshot(path=str(screenshot))
    keep_screenshot(screenshot, "run_report.png")
