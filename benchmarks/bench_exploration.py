"""Benchmark of the exploration tracker (SynAlign sec. 3.2): incremental pivoted-Cholesky updates against a
GP refitted every round, and the large case.

    python benchmarks/bench_exploration.py            # full sizes (about 2-4 minutes on 2 cores)
    python benchmarks/bench_exploration.py --quick    # small sizes, for a smoke test
    python benchmarks/bench_exploration.py --threads 2  # both cores (default 1 thread, see --help)

What is measured
- Part 1: N=20,000 x 384, 200 picks, where a *pick* is one selected sample: 40 rounds x (1 most-uncertain
  sample + k=4 nearest neighbours). The refit-per-round selector is scikit-learn's GaussianProcessRegressor
  with the same fixed kernel (eq. 2 = Matern(nu=0.5, length_scale=2 tau)) and noise, refitted on all
  selected samples and predicting every variance each round (``core.exploration.refit_select``); the
  incremental one is ``core.exploration.UncertaintyTracker``. ``identical_picks``: every round's members
  (pivot and neighbours, in order) are equal.
- Part 2: N=100,000 x 384, 1,000 picks (200 rounds x 5), incremental only, each dtype in a fresh subprocess
  so that the peak memory is that process's peak resident memory (ru_maxrss: Python, torch, the input array
  and the tracker's N x 1,000 factor). ``seconds_100k`` / ``peak_mb_100k`` are the float32-storage fast path
  (``float32_pivots_equal_float64_100k`` checks it picks what float64 picks); the float64 run is reported too.
- ``cpu_seconds_*``: process CPU time (all threads), a load-independent companion to the wall-clock
  seconds on a shared machine.

Data: synthetic unit-norm vectors with sentence-embedding-like structure (200 clusters around a shared
mean direction, plus isotropic noise), seed 0; tau = the median pairwise distance. Timings include building the
tracker (kernel bandwidth from a 1,000-point sample). The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def synthetic_embeddings(n: int, dim: int = 384, clusters: int = 200, seed: int = 0) -> np.ndarray:
    """Unit-norm float64 rows shaped like sentence embeddings: a shared mean direction (weight 0.5), one of
    ``clusters`` random cluster centres and isotropic noise, normalised. Pairwise distances match SST-2's
    all-MiniLM-L6-v2 embeddings roughly (median 1.33 vs 1.30; 5% quantile 1.27 vs 1.15)."""
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(dim)
    mean /= np.linalg.norm(mean)
    centres = rng.standard_normal((clusters, dim)) / np.sqrt(dim)
    vectors = rng.standard_normal((n, dim))
    vectors /= np.sqrt(dim)
    vectors += centres[rng.integers(clusters, size=n)]
    vectors += 0.5 * mean
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def part_large(n: int, picks: int, k: int, dtype: str) -> dict:
    """Run in a fresh process: time and peak memory of the incremental tracker alone."""
    import torch

    from synalign_kedro.core.exploration import UncertaintyTracker

    embeddings = synthetic_embeddings(n).astype(dtype)  # the tracker's storage dtype: no copy inside
    rounds = picks // (k + 1)
    start, cpu_start = time.perf_counter(), time.process_time()
    tracker = UncertaintyTracker(embeddings, tau="median", device="cpu", dtype=dtype)
    result = tracker.run(k=k, threshold=-1.0, max_rounds=rounds)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "n": n,
        "dtype": dtype,
        "rounds": len(result.rounds),
        "picks": tracker.n_selected,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_mb": peak_mb,
        "factor_mb": tracker._factor.numel() * tracker._factor.element_size() / 2**20,
        "input_mb": embeddings.nbytes / 2**20,
        "max_variance_left": tracker.max_unselected_variance(),
        "torch_threads": torch.get_num_threads(),
        "pivots": [selection.pivot for selection in result.rounds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--large-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n-small", type=int, default=20_000)
    parser.add_argument("--picks-small", type=int, default=200)
    parser.add_argument("--n-large", type=int, default=100_000)
    parser.add_argument("--picks-large", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--dtype", default="float64", help=argparse.SUPPRESS)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP/torch threads for both selectors (default 1: stable on a shared machine, where "
        "oversubscribed OpenMP threads spin; the refit's cdist is single-threaded anyway)",
    )
    args = parser.parse_args()
    if args.quick:
        args.n_small, args.picks_small, args.n_large, args.picks_large = 2_000, 50, 10_000, 200
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(limits=args.threads)
    if args.large_only:
        print(json.dumps(part_large(args.n_large, args.picks_large, args.k, args.dtype)))
        return

    from synalign_kedro.core.exploration import UncertaintyTracker, refit_select, resolve_bandwidth

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at start: {load_at_start} on {os.cpu_count()} cores")
    k = args.k
    rounds = args.picks_small // (k + 1)
    embeddings = synthetic_embeddings(args.n_small)
    tau = resolve_bandwidth("median", embeddings)
    print(
        f"part 1: N={args.n_small} x {embeddings.shape[1]}, {rounds} rounds x (1 + k={k}) = "
        f"{rounds * (k + 1)} picks, tau={tau:.4f} (median), torch threads {torch.get_num_threads()}"
    )

    start, cpu_start = time.perf_counter(), time.process_time()
    refit_picks = refit_select(embeddings, k=k, rounds=rounds, tau=tau, backend="sklearn")
    seconds_refit, cpu_refit = time.perf_counter() - start, time.process_time() - cpu_start
    print(
        f"  refit per round (sklearn GaussianProcessRegressor): {seconds_refit:.2f} s (cpu {cpu_refit:.2f} s)"
    )

    start, cpu_start = time.perf_counter(), time.process_time()
    tracker = UncertaintyTracker(embeddings, tau="median", device="cpu", dtype="float64")
    result = tracker.run(k=k, threshold=-1.0, max_rounds=rounds)
    seconds_incremental, cpu_incremental = time.perf_counter() - start, time.process_time() - cpu_start
    incremental_picks = [selection.members for selection in result.rounds]
    identical = incremental_picks == refit_picks
    print(
        f"  incremental (pivoted Cholesky, float64):          {seconds_incremental:.2f} s (cpu {cpu_incremental:.2f} s)"
    )
    print(f"  speedup {seconds_refit / seconds_incremental:.1f}x, identical picks: {identical}")
    start = time.perf_counter()
    tracker32 = UncertaintyTracker(embeddings.astype(np.float32), tau="median", device="cpu", dtype="float32")
    result32 = tracker32.run(k=k, threshold=-1.0, max_rounds=rounds)
    seconds_float32 = time.perf_counter() - start
    identical32 = [selection.members for selection in result32.rounds] == refit_picks
    print(
        f"  incremental, float32 storage:                     {seconds_float32:.2f} s, identical picks: {identical32}"
    )

    print(
        f"part 2: N={args.n_large} x 384, {args.picks_large} picks "
        f"({args.picks_large // (k + 1)} rounds x {k + 1}), fresh process"
    )
    large_runs = {}
    for dtype in ("float64", "float32"):
        completed = subprocess.run(
            [
                sys.executable,
                __file__,
                "--large-only",
                "--n-large",
                str(args.n_large),
                "--picks-large",
                str(args.picks_large),
                "--k",
                str(k),
                "--dtype",
                dtype,
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ.copy(),
        )
        large_runs[dtype] = json.loads(completed.stdout.strip().splitlines()[-1])
        run = large_runs[dtype]
        print(
            f"  {dtype}: {run['seconds']:.2f} s (cpu {run['cpu_seconds']:.2f} s), peak RSS {run['peak_mb']:.0f} MB "
            f"(factor {run['factor_mb']:.0f} MB, input {run['input_mb']:.0f} MB)"
        )
    large, large64 = large_runs["float32"], large_runs["float64"]
    same_pivots = large["pivots"] == large64["pivots"]
    print(f"  float32 pivots equal float64 pivots: {same_pivots}")

    summary = {
        "speedup_vs_refit": seconds_refit / seconds_incremental,
        "identical_picks": identical,
        "seconds_refit_20k": seconds_refit,
        "seconds_incremental_20k": seconds_incremental,
        "n_small": args.n_small,
        "picks_small": rounds * (k + 1),
        "rounds_small": rounds,
        "cpu_seconds_refit_20k": cpu_refit,
        "cpu_seconds_incremental_20k": cpu_incremental,
        "speedup_vs_refit_cpu": cpu_refit / cpu_incremental,
        "seconds_incremental_20k_float32": seconds_float32,
        "speedup_vs_refit_float32": seconds_refit / seconds_float32,
        "identical_picks_float32": identical32,
        "seconds_100k": large["seconds"],
        "cpu_seconds_100k": large["cpu_seconds"],
        "peak_mb_100k": large["peak_mb"],
        "dtype_100k": "float32",
        "float32_pivots_equal_float64_100k": same_pivots,
        "seconds_100k_float64": large64["seconds"],
        "cpu_seconds_100k_float64": large64["cpu_seconds"],
        "peak_mb_100k_float64": large64["peak_mb"],
        "n_large": large["n"],
        "picks_large": large["picks"],
        "rounds_large": large["rounds"],
        "pick_definition": f"one selected sample; a round selects 1 + k samples (k={k})",
        "refit_selector": "sklearn GaussianProcessRegressor, fixed Matern(nu=0.5, length_scale=2 tau), alpha=noise",
        "dtype_20k": "float64",
        "load_average_at_start": load_at_start,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
