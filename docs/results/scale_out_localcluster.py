"""Wall time of `kedro run --env test` (every LLM call and embedding cached) with the sequential runner and with
the Dask runner on a LocalCluster of 1 and of 2 worker processes (one thread each), in one project, in one run.

    PYTHONPATH=$PWD/src .venv/bin/python docs/results/scale_out_localcluster.py /path/to/project [--repeat 1]

The project must have finished one `kedro run --env test` already (its LLM and embedding caches are reused, so
no configuration makes an LLM call). Prints one JSON line, also written to docs/results/scale_out_localcluster.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from distributed import LocalCluster

KEDRO = str(Path(sys.executable).with_name("kedro"))
CACHES = {Path("data") / "02_intermediate" / "llm_cache_test", Path("data") / "04_feature" / "embedding_cache"}


def remove_run_outputs(root: Path) -> None:
    for layer in sorted((root / "data").iterdir()):
        if layer.name == "01_raw":
            continue
        for item in layer.iterdir():
            if item.relative_to(root) not in CACHES:
                shutil.rmtree(item) if item.is_dir() else item.unlink()


def timed_run(root: Path, *args: str) -> float:
    remove_run_outputs(root)
    env = {**os.environ, "DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run([KEDRO, "run", "--env", "test", *args], cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    for usage in (root / "data" / "08_reporting").glob("llm_usage_*.json"):
        assert json.loads(usage.read_text())["calls"] == 0, f"{usage.name}: the run made LLM calls"
    return seconds


def on_cluster(root: Path, n_workers: int) -> float:
    with contextlib.chdir(root):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        return timed_run(root, "--runner", "synalign_kedro.runners.DaskRunner", "--runner-params", f"address={cluster.scheduler_address}")
    finally:
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    root = args.project.resolve()
    times: dict[str, list[float]] = {"sequential": [], "dask_1_worker": [], "dask_2_workers": []}
    for _ in range(args.repeat):
        times["sequential"].append(timed_run(root))
        times["dask_1_worker"].append(on_cluster(root, 1))
        times["dask_2_workers"].append(on_cluster(root, 2))
    best = {name: min(values) for name, values in times.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    result = {
        "command": "PYTHONPATH=$PWD/src .venv/bin/python docs/results/scale_out_localcluster.py <project after one kedro run --env test>",
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_after": os.getloadavg(),
        "seconds": times,
        "speedup_dask_2_vs_1_worker": best["dask_1_worker"] / best["dask_2_workers"],
        "speedup_dask_2_workers_vs_sequential": best["sequential"] / best["dask_2_workers"],
    }
    Path(__file__).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
