"""The benchmark scripts that tests can check: compare_runs.py against a hand computation, bench_gpu.py on the CPU,
bench_generation.py's probe of a server's rates against a real llama-server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_generation import busy_floor, server_rates  # noqa: E402
from bench_kedro_run import method_usage  # noqa: E402
from compare_runs import paired_rows, same_real_subsets  # noqa: E402

from synalign_kedro.core import llm_server  # noqa: E402


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


def test_the_busy_floor_is_evaluated_prompt_tokens_at_prefill_plus_completion_tokens_at_decode():
    run = {"prompt_tokens": 1000, "server_cached_prompt_tokens": 200, "completion_tokens": 300}
    assert busy_floor(run, {"prefill_tokens_per_s": 100.0, "decode_tokens_per_s": 30.0}) == pytest.approx(8 + 10)


@pytest.mark.slow
@pytest.mark.skipif(llm_server.find_llama_server() is None, reason="no llama-server binary: `make llama-server`")
def test_server_rates_evaluates_each_prompt_once_then_decodes_every_slot_from_its_cache():
    endpoint = llm_server.embedded_endpoint("smollm2-135m-instruct", n_ctx=1024, backend="llama_server", parallel=2)
    try:
        texts = pd.read_csv(ROOT / "data" / "01_raw" / "sst2" / "train.csv")["text"].astype(str).tolist()
        first = server_rates(endpoint.base_url, texts, streams=2, prompt_tokens=120, n_predict=16)
        again = server_rates(endpoint.base_url, texts, streams=2, prompt_tokens=120, n_predict=16)
    finally:
        llm_server.stop_all()
    for rates in (first, again):  # a second probe on the same server is not served from the first one's cache
        assert rates["prompt_tokens"] > 60 and rates["prefill_tokens_per_s"] > 0 and rates["decode_tokens_per_s"] > 0
        # decoding re-evaluates at most the prompt's last token per slot: the prompt came from the slot's cache
        assert rates["decode_prompt_tokens_evaluated"] <= 2 and rates["decode_streams"] == 2


def test_kedro_run_benchmark_reads_only_the_usage_reports_of_its_own_run(tmp_path):
    report = {"n_samples_generated": 37, "n_samples_requested": 40, "calls": 11, "cache_hits": 0, "reasks": 2,
              "stopped": 1, "failed_tasks": 1, "prompt_tokens": 3830, "completion_tokens": 1438}  # fmt: skip
    (tmp_path / "llm_usage_synalign.json").write_text(json.dumps(report))
    written = (tmp_path / "llm_usage_synalign.json").stat().st_mtime
    assert method_usage("synalign", written - 1, tmp_path) == {
        "kept": 37, "requested": 40, "llm_calls": 11, "from_cache": 0, "reasks": 2, "stopped": 1,
        "failed_tasks": 1, "prompt_tokens": 3830, "completion_tokens": 1438,
    }  # fmt: skip
    assert method_usage("synalign", written + 1, tmp_path) is None  # an earlier run's report
    assert method_usage("simprompt", 0, tmp_path) is None  # not run
