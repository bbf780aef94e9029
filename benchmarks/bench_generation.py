"""Benchmark of generation throughput (issue 12): today's server against llama.cpp's ``llama-server``.

    python benchmarks/bench_generation.py                       # 1.5B, 64 SynAlign samples, 4 slots
    python benchmarks/bench_generation.py --model qwen2.5-coder-0.5b-instruct --only new
    python benchmarks/bench_generation.py --slots 8 --n-samples 48
    python benchmarks/bench_generation.py --repeats 3             # the new side 3 times, the median reported
    python benchmarks/bench_generation.py --only new --n-samples 128 --max-tokens 400   # runaway answers cut sooner
    python benchmarks/bench_generation.py --only new --n-samples 128 --repeats 3 --speculative ngram-simple  # drafting
    python benchmarks/bench_generation.py --only new --n-samples 128 --repeats 3 --stop-failing-answers false

The same model and the same fixed set of real generation tasks run against each server in one process,
one after the other (each server alone on the machine, a fresh empty call cache each, so nothing is
replayed): SynAlign's two-stage calls on the shipped SST-2 sample (stage 1: one attribute summary per
demonstration batch, eq. 6; stage 2: ``n_per_call`` samples per summary, eq. 7), built by the project's
own ``core.generation.generate_pool`` with the project's prompts, validation and re-asks
(``conf/base/parameters_llm.yml``: ``max_retries``, ``max_tokens``, temperature, seed).

- ``old``: llama-cpp-python's server (``server.backend: llama_cpp_python``), one request at a time
  (``max_concurrency: 1``): what the project ran before.
- ``new``: ``llama-server`` built by ``make llama-server`` with ``--slots`` parallel slots, continuous
  batching, prefix caching and (``llm.server.speculative``, ``--speculative``) n-gram drafting of repeated
  token runs, driven with ``max_concurrency`` = slots; its answers are streamed and one that is certain to fail
  (a repeated sample) is stopped there and re-asked (``llm.stop_failing_answers``, ``--stop-failing-answers``).

Demonstration batches: the exploration pipeline picks them with embeddings and a GP; to keep this benchmark
about serving, batches of ``max_demonstrations`` texts per label are drawn with a fixed seed from
``data/01_raw/sst2/train.csv`` (both servers get the same ones).

Printed per server: wall seconds (generation only, the server already up), valid samples/s (rows of the
pool: validated, deduplicated), completion tokens/s (all completion tokens / wall), the share of answers
that validate ((tasks - failed tasks) / answers), calls and re-asks; for ``llama-server``, the share of the time
that 4, 3, 2 or 1 slots were busy (from its log: what the slots do not overlap runs one sequence at a time);
the prompt tokens sent and those the server took from its prompt cache. After the new side's runs, its server's
prefill and decode rates (:func:`server_rates`) and each run's floor (:func:`busy_floor`: its tokens at those
rates with every slot busy) with the speedup that floor would give; then the ratio. Last line: JSON with
``valid_samples_per_s_old``, ``valid_samples_per_s_new``, ``speedup``, ``valid_share_old``,
``valid_share_new`` and the rest.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from synalign_kedro.core import llm_server
from synalign_kedro.core.generation import MethodConfig, generate_pool, merge_prompts
from synalign_kedro.core.llm_client import LLMClient, LLMSettings, cache_identity, open_cache

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "conf" / "base"


def _yaml(name: str) -> dict:
    return yaml.safe_load((BASE / name).read_text())


def demonstration_batches(real_train: pd.DataFrame, per_batch: int, per_label: int, seed: int) -> pd.DataFrame:
    """Fixed demonstration batches: ``per_label`` batches of ``per_batch`` texts per label (seeded)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in sorted(real_train["label"].astype(str).unique()):
        texts = real_train.loc[real_train["label"].astype(str) == label, "text"].astype(str).to_numpy()
        chosen = rng.choice(len(texts), size=min(len(texts), per_batch * per_label), replace=False)
        for index in range(per_label):
            batch = [texts[i] for i in chosen[index * per_batch : (index + 1) * per_batch]]
            if batch:
                rows.append({"batch_id": len(rows), "label": label, "texts": batch, "variance_at_selection": 0.0})
    return pd.DataFrame(rows)


def server_rates(base_url: str, texts: list[str], streams: int, prompt_tokens: int = 300, n_predict: int = 96) -> dict:
    """Prefill and decode rates of a running ``llama-server``, from its own timings (native ``/completion``).

    One prompt of about ``prompt_tokens`` tokens per slot (real texts, as long as a generation call's prompt),
    each evaluated alone in its own slot (``id_slot``): the prefill rate, tokens / prompt ms. Then every slot at
    once continues its own prompt, taken from its cache, for ``n_predict`` tokens (end of text ignored): the
    decode rate with every slot busy, all tokens / the longest decoding time."""
    root = base_url.rstrip("/").removesuffix("/v1")
    fresh = time.time_ns()  # a prompt start no earlier request had: nothing of it is in the server's caches

    def complete(slot: int, n: int) -> dict:
        words = " ".join(texts[slot % len(texts) :] + texts).split()[: int(prompt_tokens * 0.75)]
        body = {"prompt": f"{fresh} {slot}. " + " ".join(words), "n_predict": n, "ignore_eos": n > 1, "cache_prompt": True,
                "id_slot": slot, "seed": slot, "temperature": 0.9}  # fmt: skip
        request = urllib.request.Request(
            f"{root}/completion", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=600) as answer:
            return json.load(answer)["timings"]

    prefill = [complete(slot, 1) for slot in range(streams)]
    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        decode = list(pool.map(lambda slot: complete(slot, n_predict), range(streams)))
    return {
        "prefill_tokens_per_s": round(sum(t["prompt_n"] for t in prefill) / sum(t["prompt_ms"] for t in prefill) * 1e3, 1),
        "decode_tokens_per_s": round(sum(t["predicted_n"] for t in decode) / max(t["predicted_ms"] for t in decode) * 1e3, 1),
        "decode_streams": streams,
        "prompt_tokens": round(statistics.mean(t["prompt_n"] for t in prefill)),
        "decode_prompt_tokens_evaluated": sum(t["prompt_n"] for t in decode),
    }


def busy_floor(result: dict, rates: dict) -> float:
    """Seconds a run's tokens take at the probed rates with every slot busy all the time: the prompt tokens the
    server evaluated (not taken from its cache) at the prefill rate plus the completion tokens at the decode rate.
    Both servers evaluate a prompt with the same llama.cpp kernels, so prefill bounds what more slots can gain."""
    evaluated = result["prompt_tokens"] - result["server_cached_prompt_tokens"]
    return evaluated / rates["prefill_tokens_per_s"] + result["completion_tokens"] / rates["decode_tokens_per_s"]


def run_one(name: str, llm: dict, inputs: dict) -> dict:
    """Start the server, generate (timed), stop the server; the numbers of one side."""
    settings = LLMSettings.model_validate(llm)
    started = time.perf_counter()
    endpoint = llm_server.resolve_endpoint(llm)  # starts the server: not part of the generation time
    startup = time.perf_counter() - started
    cache = open_cache(settings)
    load_before = os.getloadavg()[0]
    try:
        client = LLMClient(settings, cache_identity(settings), lambda: endpoint, cache, inputs["prompts"].reask)
        started = time.perf_counter()
        pool, report = generate_pool(
            client, inputs["config"], inputs["prompts"], inputs["profile"], inputs["real_train"], inputs["batches"]
        )
        wall = time.perf_counter() - started
        # llama-server's own log: how long 4, 3, 2 or 1 slots were busy (llama-cpp-python's server logs no slots)
        occupancy = {}
        for server in llm_server.running_servers():
            occupancy.update(llm_server.slot_occupancy(server.log_path.read_text(errors="replace")))
    finally:
        cache.close()
        llm_server.stop_all()
    answers = report["calls"]
    valid_answers = report["tasks"] - report["failed_tasks"]
    result = {
        "server": name,
        "backend": llm["server"]["backend"],
        "concurrency": llm["max_concurrency"],
        "startup_s": round(startup, 1),
        "wall_s": round(wall, 1),
        "tasks": report["tasks"],
        "answers": answers,
        "reasks": report["reasks"],
        "stopped": report["stopped"],  # answers stopped early, certain to fail (llm.stop_failing_answers)
        "failed_tasks": report["failed_tasks"],
        "cache_hits": report["cache_hits"],
        "valid_samples": int(len(pool)),
        "completion_tokens": report["completion_tokens"],
        "prompt_tokens": report["prompt_tokens"],
        # of those, what the server took from its prompt cache (llama-server says; llama-cpp-python's server: 0)
        "server_cached_prompt_tokens": report["server_cached_prompt_tokens"],
        "valid_samples_per_s": round(len(pool) / wall, 4),
        "completion_tokens_per_s": round(report["completion_tokens"] / wall, 2),
        "valid_share": round(valid_answers / answers, 3) if answers else 0.0,
        "load_avg_1min_before": round(load_before, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "slot_seconds": {f"{busy}_busy": seconds for busy, seconds in occupancy.items()},
    }
    print(
        f"{name:>3} ({result['backend']}, concurrency {result['concurrency']}): {wall:.0f} s, "
        f"{result['valid_samples']} valid samples ({result['valid_samples_per_s']:.3f}/s), "
        f"{result['completion_tokens']} completion tokens ({result['completion_tokens_per_s']:.1f}/s), "
        f"{answers} answers for {result['tasks']} tasks ({result['reasks']} re-asks, {result['failed_tasks']} failed, "
        f"{result['stopped']} stopped early), "
        f"{result['prompt_tokens']} prompt tokens ({result['server_cached_prompt_tokens']} from the server's cache), "
        f"valid share {result['valid_share']:.2f}, load {result['load_avg_1min_before']}->{result['load_avg_1min_after']}",
        flush=True,
    )
    if occupancy:
        span = sum(occupancy.values())
        print(
            f"{name:>3} slots busy (share of {span:.0f} s from the first request to the last answer): "
            + ", ".join(f"{busy}: {seconds / span:.0%}" for busy, seconds in sorted(occupancy.items(), reverse=True)),
            flush=True,
        )
    if result["cache_hits"]:
        raise RuntimeError(f"{name}: {result['cache_hits']} cache hits in a fresh cache: the benchmark is not clean")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="embedded model key or .gguf path (default: conf/base llm.model)")
    parser.add_argument("--n-samples", type=int, default=64, help="SynAlign samples: n_samples / n_per_call calls per stage")
    parser.add_argument("--slots", type=int, default=None, help="llama-server slots = concurrency (default: conf/base)")
    parser.add_argument("--threads", type=int, default=None, help="server threads (default: all cores)")
    parser.add_argument(
        "--max-tokens", type=int, default=None,
        help="llm.max_tokens of every call, both sides (default: conf/base): where a runaway answer is cut off",
    )  # fmt: skip
    parser.add_argument("--only", choices=["old", "new"], default=None, help="run one side only")
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="runs of the new side (the median one is reported): its 4 slots batch differently from run to run, "
        "so its answers, re-asks and time vary; the old side, one request at a time, gives the same answers",
    )  # fmt: skip
    parser.add_argument(
        "--speculative", choices=["none", "ngram-simple"], default=None,
        help="the new side's llm.server.speculative (default: conf/base): ngram-simple drafts repeated token runs",
    )  # fmt: skip
    parser.add_argument(
        "--stop-failing-answers", choices=["auto", "true", "false"], default=None,
        help="the new side's llm.stop_failing_answers (default: conf/base); the old side's server has no per-token "
        "timings, so auto leaves it off there",
    )  # fmt: skip
    parser.add_argument(
        "--server-args", default="", help="more llama-server flags for the new side, e.g. '--spec-type ngram-simple'"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    # `kill` (SIGTERM) unwinds like Ctrl-C, so the servers started here are stopped (llm_server.stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    llm_base = _yaml("parameters_llm.yml")["llm"]
    speculative = args.speculative or llm_base["server"].get("speculative", "none")
    stop_new = {"auto": "auto", "true": True, "false": False}.get(args.stop_failing_answers, llm_base.get("stop_failing_answers", "auto"))
    if args.max_tokens:
        llm_base["max_tokens"] = args.max_tokens
    generation = _yaml("parameters_generation.yml")["generation"]
    profile = _yaml("parameters_dataset_sst2.yml")["dataset_sst2"]
    prompts = merge_prompts(
        _yaml("parameters_prompts_default.yml")["prompts_default"],
        _yaml("parameters_prompts_sst2.yml").get("prompts_sst2"),
    )
    real_train = pd.read_csv(ROOT / profile["train_path"])
    common = {key: value for key, value in generation.items() if key != "methods"}
    config = MethodConfig.model_validate({**common, "seed": 42, "method": "synalign", "n_samples": args.n_samples})
    n_calls = -(-config.n_samples // config.n_per_call)
    batches = demonstration_batches(real_train, config.max_demonstrations, per_label=n_calls, seed=42)
    inputs = {"config": config, "prompts": prompts, "profile": profile, "real_train": real_train, "batches": batches}

    model = args.model or llm_base["model"]
    slots = args.slots or int(llm_base["server"].get("parallel") or llm_base["max_concurrency"])
    threads = args.threads or llm_base["server"].get("n_threads") or os.cpu_count()
    header = {
        "model": model,
        "identity": cache_identity({"model": model}),
        "method": "synalign",
        "n_samples": config.n_samples,
        "n_per_call": config.n_per_call,
        "calls_per_stage": n_calls,
        "max_tokens": llm_base["max_tokens"],
        "max_retries": llm_base["max_retries"],
        "threads": threads,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "llama_server": str(llm_server.find_llama_server()),
        "server_args_new": args.server_args,
        "speculative_new": speculative,
        "stop_failing_answers_new": stop_new,
    }
    print("bench_generation:", json.dumps(header), flush=True)

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_generation_") as scratch:
        for name, backend, concurrency in (("old", "llama_cpp_python", 1), ("new", "llama_server", slots)):
            if args.only and args.only != name:
                continue
            llm = {
                **llm_base,
                "model": model,
                "max_concurrency": concurrency,
                "cache_dir": str(Path(scratch) / name),  # fresh and empty: nothing is replayed
                "show_progress": False,
                "stop_failing_answers": stop_new if name == "new" else llm_base.get("stop_failing_answers", "auto"),
                "server": {
                    **llm_base["server"],
                    "backend": backend,
                    "parallel": concurrency,
                    "n_threads": threads,
                    "extra_args": args.server_args.split() if name == "new" else [],
                    "speculative": speculative if name == "new" else "none",  # llama-cpp-python's server: no such flag
                },
            }
            if name == "old":
                results[name] = run_one(name, llm, inputs)
                continue
            runs = []
            for repeat in range(args.repeats):
                llm = {**llm, "cache_dir": str(Path(scratch) / f"{name}{repeat}")}  # fresh for every run
                runs.append(run_one(name if args.repeats == 1 else f"{name} run {repeat + 1}", llm, inputs))
            # where the time goes: the server's prefill and decode rates, probed after the runs on the same settings
            try:
                endpoint = llm_server.resolve_endpoint(llm)
                rates = server_rates(endpoint.base_url, inputs["real_train"]["text"].astype(str).tolist(), concurrency)
            finally:
                llm_server.stop_all()
            for run in runs:
                run["floor_s"] = round(busy_floor(run, rates), 1)
                run["valid_samples_per_s_at_floor"] = round(run["valid_samples"] / run["floor_s"], 4)
            # the run with the median valid samples/s stands for the side (median_low: an actual run)
            median = statistics.median_low(run["valid_samples_per_s"] for run in runs)
            median_run = next(run for run in runs if run["valid_samples_per_s"] == median)
            results[name] = {**median_run, "runs": runs, "rates": rates}
            print(
                f"{name} server rates (prompts of {rates['prompt_tokens']} tokens, each new to the server): prefill "
                f"{rates['prefill_tokens_per_s']} tokens/s, decode {rates['decode_tokens_per_s']} tokens/s with "
                f"{concurrency} streams; at these rates with every slot busy, each run's tokens take "
                + ", ".join(f"{run['floor_s']:.0f} s (wall {run['wall_s']:.0f} s)" for run in runs)
                + (
                    "; drafting is on, and the probe's text does not repeat: a run whose answers loop can beat its floor"
                    if speculative != "none"
                    else ""
                ),
                flush=True,
            )

    summary = {**header}
    for name, result in results.items():
        for key in ("valid_samples_per_s", "completion_tokens_per_s", "valid_share", "wall_s", "valid_samples",
                    "answers", "failed_tasks", "stopped", "concurrency", "load_avg_1min_before", "load_avg_1min_after",
                    "slot_seconds", "prompt_tokens", "server_cached_prompt_tokens", "floor_s"):  # fmt: skip
            if key in result:  # floor_s: the new side only
                summary[f"{key}_{name}"] = result[key]
    if "new" in results:
        summary["rates_new"] = results["new"]["rates"]
    if "new" in results and args.repeats > 1:
        for key in ("valid_samples_per_s", "completion_tokens_per_s", "valid_share", "wall_s", "floor_s",
                    "prompt_tokens", "server_cached_prompt_tokens"):  # fmt: skip
            summary[f"{key}_new_runs"] = [run[key] for run in results["new"]["runs"]]
        summary["repeats_new"] = args.repeats
    if {"old", "new"} <= results.keys():
        old, new = results["old"], results["new"]
        summary["speedup"] = round(new["valid_samples_per_s"] / old["valid_samples_per_s"], 2) if old["valid_samples_per_s"] else None
        summary["tokens_speedup"] = round(new["completion_tokens_per_s"] / old["completion_tokens_per_s"], 2)
        spread = ""
        if args.repeats > 1:
            summary["speedup_runs"] = [round(r / old["valid_samples_per_s"], 2) for r in summary["valid_samples_per_s_new_runs"]]
            summary["tokens_speedup_runs"] = [
                round(r / old["completion_tokens_per_s"], 2) for r in summary["completion_tokens_per_s_new_runs"]
            ]
            spread = (
                f" (median of {args.repeats} new runs; each: valid samples/s x{summary['speedup_runs']}, "
                f"tokens/s x{summary['tokens_speedup_runs']})"
            )
        # the most the slots could give: the new runs' tokens at the probed rates, every slot busy all the time
        at_floor = [round(run["valid_samples_per_s_at_floor"] / old["valid_samples_per_s"], 2) for run in new["runs"]]
        summary["speedup_at_floor_runs"] = at_floor
        print(
            f"with every slot busy all the time (at the probed rates), the new runs would reach x{at_floor} the old "
            "valid samples/s: prefill, the same llama.cpp kernels on both servers, is what more slots cannot share",
            flush=True,
        )
        print(
            f"ratio new/old: valid samples/s x{summary['speedup']}, completion tokens/s x{summary['tokens_speedup']}; "
            f"valid share {old['valid_share']:.2f} -> {new['valid_share']:.2f}{spread}",
            flush=True,
        )
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
