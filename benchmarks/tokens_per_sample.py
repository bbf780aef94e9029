"""Tokens per kept sample of every generation method, from the usage reports of the last ``kedro run``.

    kedro run                                              # or: kedro run --pipeline generation (after a full run)
    python benchmarks/tokens_per_sample.py --publish       # -> docs/results/tokens_per_sample.{csv,md,meta.json}

Reads ``data/08_reporting/llm_usage_<method>.json`` (``--env test``: ``data/test_env/08_reporting``) for every
method of the registry (``core/variants.py``). Tokens are those the answers cost, re-asks included, whether
they came from the network or the LLM cache (a re-run replays the cache: its own network tokens would be 0).
The SynAlign paper (sec. 4.4) claims its two-stage generation needs fewer tokens than the baselines; this
is the project's number for it, at the run's equal rows budget (``generation.n_samples``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from synalign_kedro.core.llm_client import answer_tokens
from synalign_kedro.core.variants import GENERATION_METHODS

ROOT = Path(__file__).resolve().parents[1]


def usage_table(folder: Path) -> pd.DataFrame:
    rows = []
    for method in GENERATION_METHODS:
        path = folder / f"llm_usage_{method}.json"
        if not path.is_file():
            print(f"{path}: missing (method not run)", file=sys.stderr)
            continue
        usage = json.loads(path.read_text())
        tokens = answer_tokens(usage)
        completion = int(usage.get("completion_tokens", 0) + usage.get("cached_completion_tokens", 0))
        kept = int(usage["n_samples_generated"])
        rows.append(
            {
                "method": method, "model": usage.get("model", ""), "n_samples_requested": usage["n_samples_requested"],
                "n_samples_kept": kept, "tasks": usage.get("tasks", 0), "reasks": usage.get("reasks", 0),
                "failed_tasks": usage.get("failed_tasks", 0), "tokens": tokens, "completion_tokens": completion,
                "tokens_per_kept_sample": round(tokens / kept, 1) if kept else None,
                "completion_tokens_per_kept_sample": round(completion / kept, 1) if kept else None,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + " --- |" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="local", help="the kedro env whose outputs to read (test: data/test_env)")
    parser.add_argument("--out", default="data/08_reporting", help="where to write tokens_per_sample.*")
    parser.add_argument("--publish", action="store_true", help="also copy the results to docs/results/")
    args = parser.parse_args()
    folder = ROOT / ("data/test_env/08_reporting" if args.env == "test" else "data/08_reporting")
    table = usage_table(folder)
    if table.empty:
        print(f"no llm_usage_<method>.json under {folder}: run `kedro run` first", file=sys.stderr)
        return 1
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    meta = {
        "command": "python benchmarks/tokens_per_sample.py " + " ".join(sys.argv[1:]),
        "source": str(folder.relative_to(ROOT)),
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "tokens_per_sample.csv", index=False)
    (out / "tokens_per_sample.md").write_text(
        f"Tokens per kept sample (`{meta['command']}`, commit {commit[:10]}, {meta['date']})\n\n"
        + markdown(table)
    )
    (out / "tokens_per_sample.meta.json").write_text(json.dumps(meta, indent=1))
    if args.publish:
        for name in ("tokens_per_sample.csv", "tokens_per_sample.md", "tokens_per_sample.meta.json"):
            shutil.copyfile(out / name, ROOT / "docs/results" / name)
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
