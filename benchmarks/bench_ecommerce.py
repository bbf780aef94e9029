"""The paper's e-commerce benchmark (LLMSYNTHOR.md §3-§4): every method on the Bayesian-network DGP, several seeds.

    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/bench_ecommerce.py --seeds 0 1 2

One reference table (2,000 records of the DGP, ``--reference-seed``) gives the target statistics (all marginals
and the BN's three joints, two-level binned); LLMSynthor, LLM-ICL, IPF and independent marginals see only those
statistics, the Gaussian copula fits the reference records, and ``reference_dgp`` is a fresh 2,000-record draw of
the DGP (the sampling-noise floor, like the paper's "GT" row). Every method is evaluated against the reference.

Writes (atomically) ``docs/results/ecommerce.csv`` (one row per method and seed), ``ecommerce.trace.csv`` (the
LLMSynthor trace per seed), ``ecommerce.convergence.png`` and ``ecommerce.meta.json`` (command, commit, date,
wall times, LLM settings and usage). LLM calls go through the project's client and its cache
(data/02_intermediate/llm_cache): an interrupted run re-run with the same arguments replays finished calls, and
LLMSynthor resumes from its per-iteration checkpoints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from synalign_kedro.core.structured import baselines, ecommerce  # noqa: E402
from synalign_kedro.core.structured.evaluation import evaluate  # noqa: E402
from synalign_kedro.core.structured.run import convergence_figure, llm_client  # noqa: E402
from synalign_kedro.core.structured.statistics import target_from_table  # noqa: E402
from synalign_kedro.core.structured.synthor import SynthorConfig, run_llmsynthor  # noqa: E402

SHORT = {"user_age": "age", "user_gender": "gender", "location_tier": "location", "product_category": "category", "payment_method": "payment"}


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


TABLE_COLUMNS = ["rejection_rate", "age_w", "gender_tvd", "location_tvd", "category_tvd", "price_w", "payment_tvd",
                 "jsd_age_gender_category", "jsd_category_price", "jsd_location_payment"]
GAP_COLUMNS = ["age_gap", "category_gap", "price_gap", "gap_age_gender_category", "gap_category_price", "gap_location_payment"]
TSTR_COLUMNS = ["tstr_discount_propensity_rf", "tstr_lifetime_value_band_lr", "tstr_lifetime_value_band_dt", "tstr_lifetime_value_band_rf"]


def summary_table(csv: Path, columns: list[str]) -> str:
    """Mean ± sd over seeds per method, as a markdown table (for docs/llmsynthor.md)."""
    frame = pd.read_csv(csv)
    order = ["llmsynthor", "llm_icl", "ipf", "independent_marginals", "gaussian_copula", "reference_dgp"]
    lines = ["| method | seeds | n records | " + " | ".join(columns) + " |", "|---" * (len(columns) + 3) + "|"]
    for method in [m for m in order if m in set(frame["method"])]:
        part = frame[frame["method"] == method]
        cells = [f"{part[c].mean():.3g} ± {part[c].std(ddof=0):.2g}" if c in part else "" for c in columns]
        lines.append(f"| {method} | {len(part)} | {part['n_records'].mean():.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--reference-seed", type=int, default=0)
    parser.add_argument("--n-records", type=int, default=2000)
    parser.add_argument("--n-iterations", type=int, default=4, help="T (the paper: 100; sized for 2 CPU cores)")
    parser.add_argument("--n-proposals", type=int, default=5)
    parser.add_argument("--reason-max-chars", type=int, default=60)
    parser.add_argument("--icl-calls", type=int, default=1)
    parser.add_argument("--icl-records", type=int, default=10)
    parser.add_argument("--top-k-marginal", type=int, default=3)
    parser.add_argument("--top-k-joint", type=int, default=6)
    parser.add_argument("--no-values", action="store_true", help="guidance without (target a%%, synthetic b%%): a shorter prompt")
    parser.add_argument("--max-tokens", type=int, default=700)
    parser.add_argument("--n-threads", type=int, default=1, help="llama.cpp threads: 1 beats 2 on an oversubscribed machine")
    parser.add_argument("--structured-output", default="plain", help="plain: no grammar (3-10x faster decoding here)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per LLM request (a busy CPU is slow)")
    parser.add_argument("--llm-params", default=str(ROOT / "conf/base/parameters_llm.yml"))
    parser.add_argument("--out", default=str(ROOT / "docs/results/ecommerce.csv"))
    parser.add_argument("--checkpoint-dir", default=str(ROOT / "data/02_intermediate/structured_checkpoints_bench"))
    parser.add_argument("--shared-copula", action="store_true", help="one copula step for all seeds (see the code)")
    parser.add_argument("--summarise", action="store_true", help="only print the markdown tables of --out")
    args = parser.parse_args()
    if args.summarise:
        for columns in (TABLE_COLUMNS, GAP_COLUMNS, TSTR_COLUMNS):
            print(summary_table(Path(args.out), columns), end="\n\n")
        return

    started = time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip())
    out = Path(args.out)
    llm_base = yaml.safe_load(Path(args.llm_params).read_text())["llm"]
    llm_base["server"] = {**llm_base.get("server", {}), "n_threads": args.n_threads}
    llm_base.update({"structured_output": args.structured_output, "max_tokens": args.max_tokens, "timeout": args.timeout, "transport_budget_s": 2 * args.timeout, "show_progress": False, "cache_dir": str(ROOT / "data/02_intermediate/llm_cache")})
    real = ecommerce.generate(args.n_records, args.reference_seed)
    target = target_from_table(real, ecommerce.VARIABLES, ecommerce.BN_GROUPS)
    copula_report: dict = {"copula": "given", "groups": []}
    if args.shared_copula:
        # the copula step once (first seed's LLM seed), shared by every seed: it is one short call, but on a loaded
        # 2-core machine its ~600-token prompt costs minutes; the loop's calls and sampling still differ per seed
        from synalign_kedro.core.llm_client import LLMUsage
        from synalign_kedro.core.structured.synthor import copula_step

        with llm_client({**llm_base, "seed": int(llm_base.get("seed", 42)) + args.seeds[0]}) as client:
            groups, copula_report = copula_step(client, target, SynthorConfig(n_joints=3), LLMUsage())
        target, refine = target.with_groups(groups, keep_given=True)
        copula_report["joint_refinement"] = refine
        print(f"copula step (shared): {copula_report}", flush=True)
    rows, traces, meta_seeds = [], [], []

    def record(method: str, seed: int, records: pd.DataFrame, seconds: float, extra: dict | None = None) -> None:
        metrics = evaluate(real, records, target, ecommerce.EVAL_GROUPS, ecommerce.RULES, ecommerce.derived_labels, SHORT, seed)
        rows.append({"method": method, "seed": seed, **metrics, "seconds": round(seconds, 1), **(extra or {})})
        print(f"seed {seed} {method:22s} {seconds:7.1f}s price_w={metrics['price_w']:.2f} "
              f"jsd_cx={metrics['jsd_category_price']:.3f} n={len(records)}", flush=True)

    for seed in args.seeds:
        llm = {**llm_base, "seed": int(llm_base.get("seed", 42)) + seed}
        timings = {}
        for name, make in (
            ("independent_marginals", lambda seed=seed: baselines.independent_marginals(target, args.n_records, seed)),
            ("ipf", lambda seed=seed: baselines.ipf(target, args.n_records, seed)),
            ("gaussian_copula", lambda seed=seed: baselines.gaussian_copula(real, ecommerce.VARIABLES, args.n_records, seed)),
            ("reference_dgp", lambda seed=seed: ecommerce.generate(args.n_records, 1000 + seed)),
        ):
            t0 = time.perf_counter()
            records = make()
            timings[name] = time.perf_counter() - t0
            record(name, seed, records, timings[name])
        config = SynthorConfig(
            n_records=args.n_records,
            n_iterations=args.n_iterations,
            n_proposals=args.n_proposals,
            reason_max_chars=args.reason_max_chars,
            top_k_marginal=args.top_k_marginal,
            top_k_joint=args.top_k_joint,
            show_values=not args.no_values,
            record_noun="e-commerce purchase",
            seed=seed,
            copula="given" if args.shared_copula else "llm",
        )
        with llm_client(llm) as client:
            t0 = time.perf_counter()
            result = run_llmsynthor(client, target, config, args.checkpoint_dir)
            timings["llmsynthor"] = time.perf_counter() - t0
            record("llmsynthor", seed, result.records, timings["llmsynthor"], {
                "failed_plans": result.report["failed_plans"], "repairs": result.report["repairs"],
                "completion_tokens": result.report["usage"]["completion_tokens"]})
            traces.append(result.trace.assign(seed=seed))
            t0 = time.perf_counter()
            icl_records, icl_report = baselines.llm_icl(client, target, args.icl_calls, args.icl_records, "e-commerce purchase", seed_offset=1000 * seed)
            timings["llm_icl"] = time.perf_counter() - t0
            record("llm_icl", seed, icl_records, timings["llm_icl"], {
                "failed_plans": icl_report["failed_calls"], "invalid_records": icl_report["invalid_records"],
                "completion_tokens": icl_report["usage"].get("completion_tokens", 0)})
        meta_seeds.append({"seed": seed, "llm_seed": llm["seed"], "seconds": {k: round(v, 1) for k, v in timings.items()},
                           "copula": result.report["copula"], "joints": result.report["joints"],
                           "llmsynthor_usage": result.report["usage"], "llm_icl": icl_report})
        # written after every seed, so a long run leaves its finished seeds behind
        atomic_write(out, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g").encode())
        trace = pd.concat(traces, ignore_index=True)
        atomic_write(out.with_suffix(".trace.csv"), trace.to_csv(index=False, float_format="%.6g").encode())

    figure = convergence_figure(traces[0]) if traces else None
    if figure is not None:
        figure.savefig(out.with_suffix(".convergence.png"), dpi=110)
    meta = {
        "command": "PYTHONPATH=$PWD/src .venv/bin/python benchmarks/bench_ecommerce.py " + " ".join(sys.argv[1:]),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": f"{os.cpu_count()} CPU cores (shared)",
        "llm": {k: v for k, v in llm_base.items() if k not in ("api_key_env",)},
        "args": vars(args),
        "seeds": meta_seeds,
        "shared_copula": copula_report if args.shared_copula else None,
    }
    atomic_write(out.with_suffix(".meta.json"), json.dumps(meta, indent=2, default=str).encode())
    print(f"wrote {out} ({len(rows)} rows) in {meta['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
