"""The default ``kedro run``, before and after the serving change of issue 12, on the same machine in one go.

    python benchmarks/bench_kedro_run.py --out docs/results/kedro_run_before_after.json

Runs ``kedro run`` (the base env: SST-2, every generation method, evaluation, A/B export) twice, one after the
other, each with a fresh empty LLM call cache (``llm.cache_dir`` in a scratch folder, so no answer is replayed):

- ``after``: the shipped defaults (``llama-server`` with ``llm.max_concurrency`` slots, answers certain to fail
  stopped early);
- ``before``: ``--params "llm.server.backend=llama_cpp_python,llm.max_concurrency=1"``: llama-cpp-python's server,
  one request at a time, what the project ran before issue 12.

``after`` runs first, so anything the first run warms (the embedding cache, the page cache of the model files)
helps ``before``, not the side the issue is about. Recorded per run: the wall time of the whole ``kedro run``
(setup of the servers included) and, from each method's usage report
(``data/08_reporting/llm_usage_<method>.json``), the rows kept and asked, LLM calls, tokens and failed tasks.
Both runs write the usual outputs under ``data/`` (the second overwrites the first's) and log to MLflow like any
run. The JSON written to ``--out`` holds the command, commit, date, machine and both runs; its last key is the
speedup of the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from synalign_kedro.core.variants import GENERATION_METHODS

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "data" / "08_reporting"
BEFORE = "llm.server.backend=llama_cpp_python,llm.max_concurrency=1"


def method_usage(method: str, since: float, folder: Path = REPORTS) -> dict | None:
    """What one method's usage report of the run that started at ``since`` says (None: not written by it)."""
    path = folder / f"llm_usage_{method}.json"
    if not path.is_file() or path.stat().st_mtime < since:
        return None
    usage = json.loads(path.read_text())
    return {
        "kept": usage["n_samples_generated"],
        "requested": usage["n_samples_requested"],
        "llm_calls": usage.get("calls", 0),
        "from_cache": usage.get("cache_hits", 0),
        "reasks": usage.get("reasks", 0),
        "stopped": usage.get("stopped", 0),
        "failed_tasks": usage.get("failed_tasks", 0),
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
    }


def kedro_run(name: str, params: str, log: Path) -> dict:
    command = [str(Path(sys.executable).with_name("kedro")), "run", "--params", params]
    load = os.getloadavg()[0]
    started = time.time()
    print(f"{name}: {' '.join(command)} (log: {log})", flush=True)
    with log.open("w") as out:
        code = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.time() - started
    if code:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise SystemExit(f"{name}: kedro run failed with exit code {code} after {wall:.0f} s:\n{tail}")
    methods = {m: usage for m in GENERATION_METHODS if (usage := method_usage(m, started)) is not None}
    result = {
        "command": f'kedro run --params "{params}"',
        "start": datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_s": round(wall, 2),
        "load_avg_1min_before": round(load, 2),
        "methods": methods,
        "kept_total": sum(m["kept"] for m in methods.values()),
        "requested_total": sum(m["requested"] for m in methods.values()),
    }
    print(
        f"{name}: {wall:.0f} s, kept {result['kept_total']} of {result['requested_total']} rows; "
        + ", ".join(f"{m} {u['kept']}/{u['requested']} ({u['llm_calls']} calls)" for m, u in methods.items()),
        flush=True,
    )
    return result


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON (default: print only)")
    args = parser.parse_args()
    header = {
        "what": "the default kedro run (base env), after then before the serving change of issue 12, one after the "
        "other on the same machine, each with a fresh empty LLM call cache",
        "command": "python benchmarks/bench_kedro_run.py" + (f" --out {args.out}" if args.out else ""),
        "commit": git_commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}",
    }
    print("bench_kedro_run:", json.dumps(header), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_kedro_run_") as scratch:
        runs = {}
        for name, params in (("after", ""), ("before", BEFORE)):
            cache = f"llm.cache_dir={Path(scratch) / name}"
            runs[name] = kedro_run(name, f"{params},{cache}" if params else cache, Path(scratch) / f"{name}.log")
    result = {**header, **runs, "speedup_wall": round(runs["before"]["wall_s"] / runs["after"]["wall_s"], 2)}
    print(f"speedup of the whole kedro run: {result['speedup_wall']}x", flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
