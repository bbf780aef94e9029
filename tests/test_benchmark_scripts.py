"""The benchmark scripts that tests can check: compare_runs.py against a hand computation, bench_gpu.py on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare_runs import paired_rows, same_real_subsets  # noqa: E402


def run_table(offset: float) -> pd.DataFrame:
    rows = []
    for seed, gold in enumerate([0.60, 0.62, 0.58]):
        rows.append({"dataset": "sst2", "shots": 8, "seed": seed, "method": "gold", "accuracy": gold})
        rows.append({"dataset": "sst2", "shots": 8, "seed": seed, "method": "synalign_mmd",
                     "accuracy": gold + 0.1 + offset * (seed + 1)})  # fmt: skip
    return pd.DataFrame(rows)


def test_paired_differences_match_a_hand_computation():
    a, b = run_table(0.01), run_table(0.0)
    table = paired_rows(a, b, ["accuracy"])
    assert len(table) == 1  # gold is the pairing check, not a row
    differences = np.array([0.01, 0.02, 0.03])
    half = stats.t.ppf(0.975, 2) * differences.std(ddof=1) / np.sqrt(3)
    row = table.iloc[0]
    assert row["n"] == 3 and np.isclose(row["difference"], 0.02)
    assert np.isclose(row["low"], 0.02 - half) and np.isclose(row["high"], 0.02 + half)


def test_runs_on_other_real_subsets_are_refused(tmp_path):
    a, b = run_table(0.0), run_table(0.0)
    b.loc[(b["method"] == "gold") & (b["seed"] == 1), "accuracy"] = 0.7
    assert same_real_subsets(a, b) == ["('sst2', 8, 'gold', 1)"]
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_runs.py"), str(tmp_path / "a.csv"), str(tmp_path / "b.csv")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "do not have the same real subsets" in done.stderr and "'gold', 1" in done.stderr


def test_the_gpu_script_runs_its_steps_on_the_cpu_at_small_sizes(tmp_path):
    """benchmarks/bench_gpu.py is run where a GPU is lent, never in CI: its small CPU run keeps it working."""
    out = tmp_path / "bench_gpu.txt"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--quick",
         "--parts", "tracker", "alignment", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["device"] == "cpu" and results["tracker"]["picks"] == 50 and results["tracker"]["rounds"] == 10
    for setting in ("paper", "default"):
        assert results["alignment"][f"{setting}_weights_sum"] == 1.0
    assert out.read_text().startswith("Command: python benchmarks/bench_gpu.py --device cpu --quick")
