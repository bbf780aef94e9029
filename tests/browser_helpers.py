"""What the browser and notebook tests share: Debian's headless Chromium driven by Playwright, servers started
in their own process group (kedro-viz and `mlflow ui` leave workers behind otherwise), and one
`kedro run --env test` per test session whose output paths are read from the project's configuration.

Playwright drives the system's /usr/bin/chromium (installed by scripts/install_browser.sh from Debian's
packages); Playwright's own browser downloads are never used (they cannot be fetched on these machines).
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = PROJECT_ROOT / "scripts" / "install_browser.sh"
VENV_BIN = Path(sys.executable).parent

# Flags that work on these machines (shared/ENVIRONMENT.md): no sandbox as root, no GPU, and no background
# connections (the closed network refuses them, many at a time). Playwright gives each launch a fresh profile.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}
SCREENSHOT_DIR_ENV = "SYNALIGN_SCREENSHOTS"  # set to a folder (e.g. docs/img) to keep the screenshots there
REUSE_RUN_ENV = "SYNALIGN_REUSE_TEST_RUN"  # a finished test-env project to use instead of running one


@functools.cache
def chromium_or_skip_reason() -> tuple[str | None, str]:
    """(path of chromium, "") or (None, why it is missing). Installs it with scripts/install_browser.sh when
    absent (apt-get, as root); the tests skip with the script's own message only where that fails."""
    found = shutil.which("chromium")
    if found is None and INSTALL_SCRIPT.is_file():
        result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900)
        found = shutil.which("chromium")
        if found is None:
            return None, "chromium cannot be installed here: " + (result.stderr or result.stdout).strip()[
                -500:
            ]
    if found is None:
        return None, f"chromium is not installed and {INSTALL_SCRIPT} is missing"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return (
            None,
            "the playwright package is not installed (pip install playwright; no browser download needed)",
        )
    return found, ""


def chromium_path() -> str:
    path, reason = chromium_or_skip_reason()
    if path is None:
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A free port on 127.0.0.1 below 49152: kedro-viz refuses ports above 49151 ("Cannot allocate an open TCP
    port"), where the kernel's ephemeral ports usually are, and moves on to the next port when one is taken."""
    for _ in range(200):
        port = random.randint(20_000, 49_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1 between 20000 and 49000")


def clean_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}


class Server:
    """A command serving HTTP on 127.0.0.1, in its own process group, stopped as a group (kedro-viz's and
    mlflow ui's workers outlive their parent when only the parent is stopped)."""

    def __init__(
        self,
        command: list[str],
        url: str,
        cwd: Path,
        log: Path,
        ready_timeout_s: float = 90.0,
        env: dict[str, str] | None = None,
    ):
        self.env = clean_env(**(env or {}))
        self.command, self.url, self.cwd, self.log_path, self.ready_timeout_s = (
            command,
            url,
            cwd,
            log,
            ready_timeout_s,
        )
        self.process: subprocess.Popen | None = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def __enter__(self) -> Server:
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"{self.command[:3]} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"{self.url} did not answer within {self.ready_timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def group_alive(self) -> bool:
        """Whether any process of the server's group is left."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        if self.process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                self.process.poll()  # reap the leader so that its group can disappear
                if not self.group_alive():
                    break
                time.sleep(0.1)
            if not self.group_alive():
                break
        self.process.poll()
        self._log.close()

    def __exit__(self, *exc) -> None:
        self.stop()


def keep_screenshot(png: Path, name: str) -> None:
    """Copy a screenshot to $SYNALIGN_SCREENSHOTS/<name> when that variable names a folder (docs/img is
    refreshed with `SYNALIGN_SCREENSHOTS=docs/img pytest tests/test_browser.py`)."""
    target_dir = os.environ.get(SCREENSHOT_DIR_ENV)
    if target_dir:
        target = Path(target_dir)
        if not target.is_absolute():
            target = PROJECT_ROOT / target
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target / name)


# ----------------------------------------------------------------------------------------------- test run
@dataclass(frozen=True)
class FinishedRun:
    """A finished `kedro run --env test` in a scratch copy of the project, and where it wrote what, as the
    project's configuration for that env says (not hard-coded: the test env's data folders may move)."""

    root: Path
    env: str
    run_report: Path
    tracking_uri: str  # absolute sqlite:////... URI
    experiment_name: str
    stdout: str

    @property
    def mlflow_db(self) -> Path:
        return Path(self.tracking_uri.removeprefix("sqlite:///"))


def _absolute_sqlite_uri(uri: str, root: Path) -> str:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(root / uri.removeprefix('sqlite:///')).as_posix()}"
    return uri


def resolve_outputs(root: Path, env: str) -> dict:
    """Where the project configured for ``env`` writes the run report and tracks runs: the catalog entry
    ``run_report`` and kedro-mlflow's ``mlflow.yml``, read through the project's own config loader."""
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(root)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(root / settings.CONF_SOURCE), env=env, **settings.CONFIG_LOADER_ARGS
    )
    loader.config_patterns.setdefault(
        "mlflow", ["mlflow*", "mlflow*/**", "**/mlflow*"]
    )  # as kedro-mlflow does
    catalog = settings.DATA_CATALOG_CLASS.from_config(loader["catalog"])
    description = catalog.get("run_report")._describe()
    report = Path(str(description["filepath"]))
    mlflow_conf = loader["mlflow"]
    return {
        "run_report": report if report.is_absolute() else root / report,
        "tracking_uri": _absolute_sqlite_uri(mlflow_conf["server"]["mlflow_tracking_uri"], root),
        "experiment_name": mlflow_conf["tracking"]["experiment"]["name"],
    }


@functools.cache
def finished_test_run(base: Path, env: str = "test") -> FinishedRun:
    """`kedro run --env <env>` once per test session (cached on ``base``), as a user types it (a CLI process:
    kedro-mlflow opens and closes its run, MLflow flushes its traces at exit)."""
    from tests.kedro_helpers import scratch_project

    reuse = os.environ.get(REUSE_RUN_ENV)
    if reuse:  # a project folder where `kedro run --env <env>` already finished (to iterate on these tests)
        root = Path(reuse).resolve()
        return FinishedRun(root=root, env=env, stdout="", **resolve_outputs(root, env))
    base.mkdir(parents=True, exist_ok=True)
    root = scratch_project(base)
    result = subprocess.run(
        [str(VENV_BIN / "kedro"), "run", "--env", env],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return FinishedRun(root=root, env=env, stdout=result.stdout + result.stderr, **resolve_outputs(root, env))
