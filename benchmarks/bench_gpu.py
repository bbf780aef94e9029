"""The torch paths on one device (issue 12's GPU script): embedding throughput, the GP tracker at N = 1,000,000
and the MMD alignment at 100k real x 20k pool, with the project's own code and settings.

    python benchmarks/bench_gpu.py --device cuda --out docs/results/bench_gpu_h100.txt   # a GPU machine, < 10 min
    python benchmarks/bench_gpu.py --device cpu --quick                                   # the same steps, small

Parts (each timed after an untimed warm-up on a small input, CUDA synchronised before each clock reading):

- ``embedding``: the shipped train texts (SST-2, AG News, Amazon; cycled to ``--texts``) embedded with
  all-MiniLM-L6-v2 (``core.embedding.embed_texts``, no cache) at ``--batch-size`` (conf/gpu: 512), and with
  all-mpnet-base-v2 when its pip parts are installed: texts per second.
- ``tracker``: ``core.exploration.UncertaintyTracker`` (SynAlign sec. 3.2, the default precision) on ``--n-tracker``
  unit rows x 384 (clustered, like sentence embeddings), ``--picks`` picks (rounds of 1 + k = 4): seconds.
- ``alignment``: ``core.alignment.align_pool`` at ``--n-real`` x ``--n-pool`` (384-d), the paper's setting (linear
  Theta, |Theta| = 100, 500 steps, eq. 10-11) and the project's default (``AlignmentSettings()``: random Fourier
  features, D = 2,000, per label, its tolerance): seconds.

It needs a CUDA build of torch for ``--device cuda`` (the project's ``make setup`` installs the CPU wheel; on a GPU
machine ``pip install torch`` from the default index brings CUDA). The last line of stdout is one JSON object; ``--out`` also writes the command, commit, date and device. The
2-core figures to set beside it: ``docs/results/bench_alignment.txt`` (alignment), ``bench_exploration.py``
(tracker, N = 100,000 on 2 cores) and the embedding rates in ``docs/results/`` (see docs/scale_out.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from synalign_kedro.core import alignment as core_alignment
from synalign_kedro.core.aligned_variants import AlignmentSettings
from synalign_kedro.core.device import resolve_device
from synalign_kedro.core.embedding import embed_texts
from synalign_kedro.core.exploration import UncertaintyTracker, resolve_bandwidth

ROOT = Path(__file__).resolve().parents[1]
EMBEDDERS = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}


def clock(device: torch.device) -> float:
    """Wall seconds, after the device has finished what was queued (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {torch.get_num_threads()} torch threads"
    return platform.processor() or platform.machine()


def unit_rows(rng: np.random.Generator, n: int, dim: int, shift: float = 0.0) -> np.ndarray:
    """Unit-norm clustered float32 rows, like sentence embeddings: 20 random centres plus noise."""
    centres = rng.normal(size=(20, dim)) + shift
    rows = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: N = 1,000,000 in float64 at once would be 3 GB
        stop = min(n, start + 100_000)
        block = centres[rng.integers(0, 20, stop - start)] + 0.8 * rng.normal(size=(stop - start, dim))
        rows[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return rows


def shipped_texts(n: int) -> list[str]:
    texts = []
    for name in ("sst2", "ag_news", "amazon_category"):
        texts += pd.read_csv(ROOT / "data" / "01_raw" / name / "train.csv")["text"].astype(str).tolist()
    return [texts[i % len(texts)] for i in range(n)]


def part_embedding(args, device: torch.device) -> dict:
    texts = shipped_texts(args.texts)
    out = {"texts": len(texts), "batch_size": args.batch_size, "mean_characters": float(np.mean([len(t) for t in texts]))}
    for space, model in EMBEDDERS.items():
        try:
            embed_texts(texts[:64], model, args.batch_size, str(device), cache_dir=None, show_progress=False)
        except (OSError, FileNotFoundError, ValueError) as error:  # mpnet's pip parts not installed
            out[f"{space}_skipped"] = f"{type(error).__name__}: {error}"[:200]
            continue
        start = clock(device)
        embeddings = embed_texts(texts, model, args.batch_size, str(device), cache_dir=None, show_progress=False)
        seconds = clock(device) - start
        out[f"{space}_seconds"] = round(seconds, 3)
        out[f"{space}_texts_per_s"] = round(len(texts) / seconds, 1)
        out[f"{space}_dim"] = int(embeddings.shape[1])
    return out


def part_tracker(args, device: torch.device) -> dict:
    rng = np.random.default_rng(0)
    embeddings = unit_rows(rng, args.n_tracker, 384)
    tau = resolve_bandwidth("median", embeddings)
    k, rounds = 4, max(1, args.picks // 5)
    UncertaintyTracker(embeddings[:2_000], tau=tau, device=device).run(k, -1.0, 2)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = clock(device)
    tracker = UncertaintyTracker(embeddings, tau=tau, device=device)
    result = tracker.run(k=k, threshold=-1.0, max_rounds=rounds)
    seconds = clock(device) - start
    out = {"n": args.n_tracker, "dim": 384, "picks": len(result.selected), "rounds": len(result.rounds),
           "tau": round(float(tau), 4), "seconds": round(seconds, 3)}  # fmt: skip
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return out


def part_alignment(args, device: torch.device) -> dict:
    rng = np.random.default_rng(0)
    real = unit_rows(rng, args.n_real, 384)
    pool = np.vstack([unit_rows(rng, args.n_pool // 2, 384), unit_rows(rng, args.n_pool - args.n_pool // 2, 384, 0.3)])
    real_labels, pool_labels = rng.choice(["a", "b"], len(real)), rng.choice(["a", "b"], len(pool))
    defaults = AlignmentSettings()
    settings = {
        "paper": {"projection": "linear", "n_projections": 100, "per_label": False, "n_iterations": 500,
                  "learning_rate": defaults.learning_rate, "tolerance": 0.0},
        "default": {"projection": defaults.projection, "n_projections": defaults.n_projections,
                    "per_label": defaults.per_label, "n_iterations": defaults.n_iterations,
                    "learning_rate": defaults.learning_rate, "tolerance": defaults.tolerance},
    }  # fmt: skip
    out = {"n_real": len(real), "n_pool": len(pool), "settings": settings}
    core_alignment.align_pool(real[:2_000], pool[:500], n_iterations=5, device=device)  # warm-up
    for name, setting in settings.items():
        start = clock(device)
        aligned = core_alignment.align_pool(
            real, pool, real_labels, pool_labels, bandwidth="median", seed=0, device=device, **setting
        )
        out[f"{name}_seconds"] = round(clock(device) - start, 3)
        out[f"{name}_final_loss"] = float(aligned.final_loss)
        weights = np.asarray(aligned.weights, dtype=np.float64)
        out[f"{name}_weights_sum"] = round(float(weights.sum()), 6)  # 1 (the simplex), a check
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto (cuda when torch sees one), cuda, cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes: check the script, not the device")
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=512, help="texts per embedding batch (conf/gpu: 512)")
    parser.add_argument("--n-tracker", type=int, default=1_000_000)
    parser.add_argument("--picks", type=int, default=1_000)
    parser.add_argument("--n-real", type=int, default=100_000)
    parser.add_argument("--n-pool", type=int, default=20_000)
    parser.add_argument("--parts", nargs="+", default=["embedding", "tracker", "alignment"],
                        choices=["embedding", "tracker", "alignment"])  # fmt: skip
    parser.add_argument("--out", help="also write the command, commit, date, device and JSON to this file")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.batch_size, args.n_tracker, args.picks = 256, 64, 20_000, 50
        args.n_real, args.n_pool = 5_000, 1_000
    device = resolve_device(args.device)
    results: dict = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "quick": args.quick,
    }
    started = time.perf_counter()
    for part in args.parts:
        part_started = time.perf_counter()
        results[part] = {"embedding": part_embedding, "tracker": part_tracker, "alignment": part_alignment}[part](
            args, device
        )
        print(f"{part}: {json.dumps(results[part])} ({time.perf_counter() - part_started:.1f} s)", flush=True)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    line = json.dumps(results)
    print(line)
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        Path(args.out).write_text(
            "Command: python " + " ".join(shlex.quote(a) for a in ["benchmarks/bench_gpu.py", *sys.argv[1:]]) + "\n"
            f"commit: {commit}\ndate: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
            f"device: {results['device_name']} ({results['device']})\n{line}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
