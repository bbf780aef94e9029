"""Paired differences between two ``bench_value`` runs on the same real subsets (issue 13).

    python benchmarks/compare_runs.py A/benchmark.csv B/benchmark.csv [--shots 32] [--out A/compare.md]

For every (data set, shots, method) in both files, the mean over seeds of ``metric(A) - metric(B)`` for the
same seed, with a 95 % Student-t interval (:func:`~synalign_kedro.core.fewshot.mean_interval`), for accuracy,
macro-F1 and the held-out distribution metrics. Two runs pair by seed only when their real subsets are the
same: the script checks that gold's accuracy is equal seed by seed (gold depends on the real subset alone) and
stops otherwise. Use it for a change that makes a second run, e.g. ``--pool-per-shots`` against the default, or
one-stage against two-stage pools made in two runs.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from synalign_kedro.core.fewshot import mean_interval

KEYS = ["dataset", "shots", "method", "seed"]


def same_real_subsets(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """The (data set, shots, seed) cells where gold's accuracy differs between the two runs."""
    gold_a = a[a["method"] == "gold"].set_index(KEYS)["accuracy"]
    gold_b = b[b["method"] == "gold"].set_index(KEYS)["accuracy"]
    both = gold_a.index.intersection(gold_b.index)
    return [str(key) for key in both if not np.isclose(gold_a[key], gold_b[key], rtol=0, atol=1e-12)]


def paired_rows(a: pd.DataFrame, b: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    joined = a.set_index(KEYS)[metrics].merge(
        b.set_index(KEYS)[metrics], how="inner", left_index=True, right_index=True, suffixes=("_a", "_b")
    )
    rows = []
    for (dataset, shots, method), group in joined.groupby(level=["dataset", "shots", "method"]):
        if method == "gold":
            continue
        for metric in metrics:
            differences = (group[f"{metric}_a"] - group[f"{metric}_b"]).to_numpy()
            mean, half = mean_interval(differences)
            rows.append({"dataset": dataset, "shots": shots, "method": method, "metric": metric,
                         "n": int(np.isfinite(differences).sum()), "mean_a": group[f"{metric}_a"].mean(),
                         "mean_b": group[f"{metric}_b"].mean(), "difference": mean,
                         "low": mean - half, "high": mean + half})  # fmt: skip
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> list[str]:
    lines = ["| dataset | shots | method | metric | n | mean A | mean B | A − B | 95 % interval |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for row in table.itertuples():
        lines.append(
            f"| {row.dataset} | {row.shots} | {row.method} | {row.metric} | {row.n} | {row.mean_a:.4f} | "
            f"{row.mean_b:.4f} | {row.difference:+.4f} | [{row.low:+.4f}, {row.high:+.4f}] |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", help="benchmark.csv of run A")
    parser.add_argument("b", help="benchmark.csv of run B (the reference)")
    parser.add_argument("--shots", nargs="+", type=int, help="only these shots values")
    parser.add_argument("--out", help="also write the markdown here")
    args = parser.parse_args()
    a, b = pd.read_csv(args.a), pd.read_csv(args.b)
    if args.shots:
        a, b = a[a["shots"].isin(args.shots)], b[b["shots"].isin(args.shots)]
    differing = same_real_subsets(a, b)
    if differing:
        print(f"{args.a} and {args.b} do not have the same real subsets (gold's accuracy differs at "
              f"{', '.join(differing)}): they cannot be paired by seed", file=sys.stderr)  # fmt: skip
        return 2
    metrics = ["accuracy", "macro_f1", *[c for c in a.columns if c.startswith("heldout_") and c in b.columns]]
    table = paired_rows(a, b, metrics)
    if table.empty:
        print(f"no (data set, shots, method, seed) cell in both {args.a} and {args.b}", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = [
        "Produced by `python " + " ".join(shlex.quote(x) for x in ["benchmarks/compare_runs.py", *sys.argv[1:]])
        + f"` at commit {commit} on {datetime.now(UTC).isoformat(timespec='seconds')}.",
        "",
        f"A = `{args.a}`, B = `{args.b}`; paired by data set, shots and seed (gold equal in both: the same real "
        "subsets). Accuracy and macro-F1: positive = A better; distances and AUC: negative = A closer to the "
        "held-out data.",
        "",
    ]
    text = "\n".join(header + markdown(table)) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
