"""`kedro viz build` (as documented in the README) renders every registered pipeline offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.kedro_helpers import scratch_project


def test_kedro_viz_build_lists_every_pipeline(tmp_path):
    root = scratch_project(tmp_path)
    kedro = str(Path(sys.executable).with_name("kedro"))
    env = {**os.environ, "DO_NOT_TRACK": "true"}
    result = subprocess.run([kedro, "viz", "build"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (root / "build" / "index.html").is_file()
    graph = json.loads((root / "build" / "api" / "main").read_text())
    pipelines = {p["id"] for p in graph["pipelines"]}
    assert {
        "__default__", "ingestion", "exploration", "generation", "alignment", "evaluation", "ab_export",
        "coverage_sweep", "alignment_sweep",
    } <= pipelines  # fmt: skip
    tags = {t["id"] for t in graph["tags"]}
    assert {"gpu", "simprompt", "attrprompt", "synalign_one_stage", "synalign"} <= tags
