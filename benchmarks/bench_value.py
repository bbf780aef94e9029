"""Few-shot value benchmark (issues 13 and 15): does real + SynAlign beat real alone, is ``synalign_mmd`` closer
to held-out real data than ``synalign_random``, and does ``synalign_feedback`` beat them at equal tokens?

    make bench-value                                   # the default run below, results in data/08_reporting
    python benchmarks/bench_value.py --datasets sst2 --shots 8 --seeds 0   # a quick look
    python benchmarks/bench_value.py --publish         # also copies the results to docs/results/
    python benchmarks/bench_value.py --methods synalign_random synalign_mmd synalign_feedback one_stage_random

The default (3 shipped sets x shots 8 32 x seeds 0 1 2, the SynAlign pool's variants, :data:`DATASET_BUDGETS`
rows per class, the zero-shot row on 200 test texts) is sized to about 90 minutes on 2 cores with
llama-server and an empty cache; ``synalign_feedback`` and the one-stage pool each add a pool per data set x
seed, so they are asked for with ``--methods``.

For each data set x seed x shots x method (data set: the shipped ``data/01_raw/<set>``):

1. Three disjoint real parts (ingestion's :func:`~synalign_kedro.core.ingestion.ingest_parts`): ``heldout``
   (``--heldout-share`` of each class of ``train.csv``, one fixed split, seed 0: never fitted on), what the method may see (the rest), and
   ``test.csv`` (the classifier's test set). From the visible part, ``shots`` rows per class, nested across
   shots for one seed.
2. One SynAlign pool per data set x seed (``--pool-per-class`` rows per class, default per data set): the GP tracker (Algorithm 1)
   picks demonstration batches among the *smallest* shots subset, then the two-stage generation (eq. 6-7)
   with the project's prompts, LLM settings, cache and validation (``conf/``). The pool is generated once
   and serves every shots value of the seed (the generator sees ``min(shots)`` examples per class: the cost
   of the benchmark is the LLM, and this keeps it within reach of a 2-core machine). ``--pool-per-shots``: a
   pool per shots value instead, generated from that subset (the ``pool_shots`` column says which).
3. Variants, all of ``--synthetic-per-class`` rows per class, drawn without replacement per label with
   probability proportional to a weight (one rule, :func:`~synalign_kedro.core.fewshot.draw_per_label`):
   ``synalign_random`` (uniform weights), ``synalign_mmd`` (eq. 10 weights fitted to the shots subset with
   the project's default alignment: random Fourier features, per label) and ``synalign_mmd_paper`` (the
   paper's configuration: linear Theta, |Theta| = 100, one global problem, eq. 10-11), and
   ``synalign_feedback`` (issue 15: drawn by the same uniform rule from its own pool, generated from the same
   demonstration subset with the same rows budget and, as token budget, what the SynAlign pool's answers cost,
   cached or not: equal tokens), and ``synalign_feedback_mmd`` (that pool weighted as ``synalign_mmd``: both
   corrections); ``one_stage_random`` / ``one_stage_mmd``: the same two rules on a ``synalign_one_stage`` pool of
   the same rows asked (table 4). ``gold`` = the shots subset alone. Per data set, the LLM zero-shot row (table 1:
   the generator labels ``--zero-shot-rows`` texts of ``test.csv`` itself, ``core/zero_shot.py``) goes to
   ``benchmark_zero_shot.csv``.
4. Scores: accuracy and macro-F1 on the full ``test.csv`` of a logistic regression on MiniLM embeddings,
   ``C`` fixed in advance (1.0, the project default; nothing is chosen on the test set), trained on the shots
   subset + the variant; distribution metrics of the variant (gold: of the shots subset) against ``heldout``
   in MiniLM space (the one alignment uses) and in all-mpnet-base-v2 space (which nothing here fits on):
   MMD^2 with a bandwidth fixed once per data set and space from the held-out rows, exact W1, and the
   cross-validated real-vs-synthetic AUC (0.5 = indistinguishable).

Outputs (``--out``, default ``data/08_reporting``): ``benchmark.csv`` (one row per cell),
``benchmark_differences.csv`` (paired differences against gold, same seed and subset, with 95 % t-intervals
over seeds), ``benchmark.md`` (the tables docs/value.md quotes), ``benchmark.png``, ``benchmark_feedback_trace.csv``
(synalign_feedback's rounds: its gap to what it may see, its spend) and ``benchmark.meta.json`` (command, commit,
date, timings, tokens); one MLflow
run in the project's tracking store (experiment ``bench_value``). Pools and their LLM usage are kept under
``data/03_primary/bench_value/`` so a re-run (or a resumed one) asks the LLM nothing twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from synalign_kedro.core import llm_server
from synalign_kedro.core.aligned_variants import AlignmentSettings, align
from synalign_kedro.core.classifier import evaluate_downstream
from synalign_kedro.core.demonstrations import TrackerSettings, demonstration_batches
from synalign_kedro.core.embedding import embed_texts
from synalign_kedro.core.evaluation import EvaluationSettings, heldout_bandwidth
from synalign_kedro.core.fewshot import (
    draw_per_label,
    heldout_distances,
    mean_interval,
    nested_shots,
    paired_differences,
)
from synalign_kedro.core.generation import (
    GenerationSettings,
    generate_pool,
    llm_for_dataset,
    prompts_for_dataset,
)
from synalign_kedro.core.ingestion import ingest_parts
from synalign_kedro.core.llm_client import (
    DEFAULT_REASK,
    LLMClient,
    LLMSettings,
    answer_tokens,
    cache_identity,
    open_cache,
)
from synalign_kedro.core.zero_shot import classify_zero_shot

ROOT = Path(__file__).resolve().parents[1]
SPACES = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}
METHODS = (
    "gold", "synalign_random", "synalign_mmd", "synalign_mmd_paper", "synalign_feedback", "synalign_feedback_mmd",
    "one_stage_random", "one_stage_mmd",
)  # fmt: skip
# the pool each method draws from (the rest: the SynAlign two-stage pool); gold draws from none ("")
POOL_OF = {
    "gold": "",
    "synalign_feedback": "synalign_feedback",
    "synalign_feedback_mmd": "synalign_feedback",
    "one_stage_random": "synalign_one_stage",
    "one_stage_mmd": "synalign_one_stage",
}
# Per data set, what the default run makes and draws (``--pool-per-class``/``--synthetic-per-class`` set one
# value for all): sized so that the default run of the three shipped sets takes about 90 minutes on 2 cores with
# llama-server (issue 13; measured in docs/results/bench_value_default/). Amazon has 24 classes of ~500-character
# reviews: a pool row costs ~500 tokens there against ~150 on SST-2, so it gets fewer rows per class.
DATASET_BUDGETS = {
    "sst2": {"pool_per_class": 16, "synthetic_per_class": 8},
    "ag_news": {"pool_per_class": 16, "synthetic_per_class": 8},
    "amazon_category": {"pool_per_class": 6, "synthetic_per_class": 3},
}
OTHER_BUDGET = {"pool_per_class": 16, "synthetic_per_class": 8}  # a data set not listed above
# the default variants: those of the SynAlign pool (one pool per data set x seed); synalign_feedback and the
# one-stage pool (table 4) each cost a pool more, so they are asked for with --methods
DEFAULT_METHODS = ["synalign_random", "synalign_mmd", "synalign_mmd_paper"]
PAPER_ALIGNMENT = {"projection": "linear", "n_projections": 100, "per_label": False}
SKIPPED: list[
    str
] = []  # shots a data set cannot give (too few visible rows in a class), said in the meta file
# synalign_feedback's own trace, one row per data set x seed x round (its gap to what it may see, its spend)
FEEDBACK_TRACES: list[dict] = []
OUTPUTS = (
    "benchmark.csv",
    "benchmark_differences.csv",
    "benchmark.md",
    "benchmark.png",
    "benchmark.meta.json",
    "benchmark_feedback_trace.csv",  # not re-made by --from-csv
    "benchmark_zero_shot.csv",  # not re-made by --from-csv
)
# the LLM as the classifier (table 1's "LLM zero-shot" row), one row per data set
ZERO_SHOT_ROWS: list[dict] = []
# the pool and synthetic rows per class each data set ran with (said in the meta file)
BUDGETS: dict[str, dict] = {}
# the pipeline's rule for the one MMD bandwidth: the median pairwise distance of the held-out rows
CPU_MEDIAN_MMD = EvaluationSettings(mmd={"bandwidth": "median", "device": "cpu"})
CLASSIFIER_C = 1.0  # fixed in advance: the project's default (conf/base/parameters_evaluation.yml)


def project_parameters(env: str, runtime_params: dict | None = None) -> dict:
    """The project's parameters (conf/base, then conf/<env>, then ``runtime_params``), read the way
    ``kedro run --env <env> --params ...`` reads them."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        str(ROOT / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft"},
        runtime_params=runtime_params or {},
    )
    return loader["parameters"]


def parse_params(value: str | None) -> dict:
    """``"llm.max_tokens=1400,generation.n_per_call=4"`` -> nested dict, as ``kedro run --params`` parses it."""
    from omegaconf import OmegaConf

    if not value:
        return {}
    items = [item.strip() for item in value.split(",") if item.strip()]
    for item in items:
        if "=" not in item or not item.partition("=")[0].strip():
            raise ValueError(f"--params: {item!r} is not key=value (e.g. llm.max_tokens=1400)")
    return OmegaConf.to_container(OmegaConf.from_dotlist(items))


def params_tag(runtime_params: dict) -> str:
    """The pool files' suffix for runs with ``--params``: pools made under other settings are not reused
    (``alignment`` settings do not make pools, so they do not change it)."""
    generating = {key: value for key, value in runtime_params.items() if key != "alignment"}
    if not generating:
        return ""
    return "_params" + hashlib.sha256(json.dumps(generating, sort_keys=True).encode()).hexdigest()[:8]


def pools_needed(methods: list[str]) -> list[str]:
    """The pools ``methods`` draw from; the feedback pool's token budget is the SynAlign pool's, so it needs that."""
    needed = {POOL_OF.get(method, "synalign") for method in methods} - {""}
    if "synalign_feedback" in needed:
        needed.add("synalign")
    return [pool for pool in ("synalign", "synalign_feedback", "synalign_one_stage") if pool in needed]


def embed(texts, space: str) -> np.ndarray:
    return embed_texts(list(texts), model=SPACES[space], device="cpu", show_progress=False)


@contextmanager
def llm_client(llm: dict, reask: str = DEFAULT_REASK) -> Iterator[LLMClient]:
    """The project's LLM client for ``llm`` (its settings, call cache and endpoint), the cache closed after."""
    settings = LLMSettings.model_validate(llm)
    cache = open_cache(settings)
    try:
        endpoint = lambda: llm_server.resolve_endpoint(llm)  # noqa: E731 (started only when a call is not cached)
        yield LLMClient(settings, cache_identity(settings), endpoint, cache, reask)
    finally:
        cache.close()


class PoolSource:
    """SynAlign pools for one data set: generated once per seed, saved (parquet + usage JSON), reused."""

    def __init__(
        self, parameters: dict, dataset: str, profile: dict, pool_per_class: int, folder: Path, tag: str = ""
    ) -> None:
        self.parameters, self.dataset, self.profile = parameters, dataset, profile
        self.pool_per_class, self.folder, self.tag = pool_per_class, folder, tag
        self.prompts = prompts_for_dataset(dataset, parameters)
        self.llm = llm_for_dataset(parameters["llm"], profile)

    def pool(
        self,
        seed: int,
        demonstration_subset: pd.DataFrame,
        embeddings: np.ndarray,
        method: str = "synalign",
        token_budget: int | None = None,
    ) -> tuple[pd.DataFrame, dict]:
        """``method``'s pool (``synalign``, ``synalign_one_stage``, or ``synalign_feedback`` within
        ``token_budget`` tokens)."""
        stem = (
            self.folder
            / f"{self.dataset}_seed{seed}_shots{self._shots(demonstration_subset)}_pool{self.pool_per_class}{self.tag}"
        )
        if method != "synalign":
            budget = "" if token_budget is None else f"_budget{token_budget}"
            stem = stem.with_name(f"{stem.name}_{method}{budget}")
        pool_path, usage_path = stem.with_suffix(".parquet"), stem.with_suffix(".usage.json")
        if pool_path.is_file() and usage_path.is_file():
            return pd.read_parquet(pool_path), json.loads(usage_path.read_text())
        tracker = TrackerSettings.model_validate(
            {**self.parameters["exploration"]["tracker"], "device": "cpu"}
        )
        batches, _ = demonstration_batches(demonstration_subset, embeddings, tracker, seed)
        n_labels = demonstration_subset["label"].nunique()
        generation = GenerationSettings.model_validate(self.parameters["generation"])
        config = generation.method_config(method, seed).model_copy(
            update={
                "n_samples": self.pool_per_class * n_labels,
                "feedback": generation.feedback.model_copy(update={"token_budget": token_budget}),
                # a smaller pool (feedback at equal tokens, one-stage) is a result to report, not a failed run
                **({"min_kept_share": 0.0} if method != "synalign" else {}),
            }
        )
        started = time.perf_counter()
        with llm_client(self.llm, self.prompts.reask) as client:
            pool, usage = generate_pool(
                client, config, self.prompts, self.profile, demonstration_subset, batches, embeddings,
                lambda texts: embed(texts, "minilm"),
            )  # fmt: skip
        usage["benchmark_wall_s"] = round(time.perf_counter() - started, 1)
        stem.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(pool_path, lambda path: pool.to_parquet(path))
        _atomic_write(usage_path, lambda path: path.write_text(json.dumps(usage, indent=1, default=str)))
        return pool, usage

    @staticmethod
    def _shots(subset: pd.DataFrame) -> int:
        return int(subset["label"].value_counts().min())


def _samples_calls(usage: dict, stage: str) -> dict:
    """How many samples calls a stage of a pool sent, and how many failed after their re-asks."""
    failed = sum(failure["stage"] == stage for failure in usage["failures"])
    return {"samples_calls": int(usage["stages"].get(stage, {}).get("tasks", 0)), "failed_samples_calls": failed}


def _atomic_write(path: Path, write) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def dataset_budget(dataset: str, args) -> dict:
    """Pool rows and synthetic rows per class for ``dataset``: :data:`DATASET_BUDGETS`, unless the command line
    sets them for every data set."""
    budget = dict(DATASET_BUDGETS.get(dataset, OTHER_BUDGET))
    for key in budget:
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    return budget


def zero_shot_sample(real_test: pd.DataFrame, rows: int) -> pd.DataFrame:
    """``rows`` test rows drawn once with seed 0 (in their file order), or the whole test set when ``rows`` is 0
    or not smaller: the LLM labels ~1 text per second on 2 cores, so the default run asks it for a sample."""
    if rows <= 0 or rows >= len(real_test):
        return real_test
    return real_test.sample(rows, random_state=0).sort_index()


def zero_shot_row(dataset: str, profile: dict, real_test: pd.DataFrame, llm: dict, batch_size: int) -> dict:
    """The generator LLM labels the real test texts it is given itself (no real example in the prompt,
    temperature 0): table 1's "LLM zero-shot" row. Calls go through the project's client and cache (a re-run
    asks nothing)."""
    from sklearn.metrics import accuracy_score, f1_score

    started = time.perf_counter()
    truth = real_test["label"].astype(str).tolist()
    labels = sorted(set(truth))
    with llm_client({**llm, "temperature": 0.0}) as client:
        predicted, usage = classify_zero_shot(client, real_test["text"].tolist(), labels, profile, batch_size)
    answered = [p if p is not None else "(no answer)" for p in predicted]  # an unanswered text counts as wrong
    return {
        "dataset": dataset, "method": "llm_zero_shot", "model": llm["model"], "n_test": len(truth),
        "n_unanswered": sum(p is None for p in predicted), "batch_size": batch_size,
        # what the LLM answers, as shares of the test texts (a classifier stuck on one label shows here)
        "predicted_shares": json.dumps(pd.Series(answered).value_counts(normalize=True).round(4).to_dict()),
        "accuracy": accuracy_score(truth, answered),
        "macro_f1": f1_score(truth, answered, labels=labels, average="macro", zero_division=0),
        # tasks: the calls the row needs, cached or not (usage.calls counts only those sent over the network)
        "tasks": usage.tasks, "failed_tasks": usage.failures, "tokens": usage.answer_tokens,
        "wall_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def distribution_row(
    sets: dict[str, np.ndarray], heldout: dict[str, np.ndarray], bandwidths: dict, seed: int
) -> dict:
    row = {}
    for space, embeddings in sets.items():
        row.update(heldout_distances(heldout[space], embeddings, bandwidths[space], space, seed=seed))
    return row


def method_weights(
    method: str, pool: pd.DataFrame, pool_embeddings: np.ndarray, subset: pd.DataFrame, real_embeddings: np.ndarray,
    seed: int, alignment: AlignmentSettings,
) -> np.ndarray:
    """The drawing weights of ``method`` on its pool: ``*_random`` and ``synalign_feedback`` uniform (the same
    drawing rule); the rest eq. 10's weights under the project's ``alignment`` settings (``synalign_mmd_paper``:
    with the paper's linear setting, eq. 10-11)."""
    if method.endswith("_random") or method == "synalign_feedback":
        return np.ones(len(pool))
    settings = alignment.model_copy(update=PAPER_ALIGNMENT) if method == "synalign_mmd_paper" else alignment
    return align(pool, pool_embeddings, subset, real_embeddings, settings, seed).weights


def seed_pools(
    source: PoolSource, needed: list[str], dataset: str, seed: int, subset: pd.DataFrame, spaces: list[str], log
) -> tuple[dict, dict]:
    """The pools ``needed`` for one seed, generated from ``subset`` (its demonstrations) or read back, and their
    embeddings per space: ``({pool: (rows, usage)}, {pool: {space: embeddings}})``."""
    shots = PoolSource._shots(subset)
    subset_embeddings = embed(subset["text"], "minilm")
    pools = {}
    if "synalign" in needed:
        pools["synalign"] = source.pool(seed, subset, subset_embeddings)
    if "synalign_feedback" in needed:
        # synalign_feedback at equal tokens: the budget is what the SynAlign pool's answers cost
        pools["synalign_feedback"] = source.pool(
            seed, subset, subset_embeddings, "synalign_feedback", answer_tokens(pools["synalign"][1])
        )
        feedback_usage = pools["synalign_feedback"][1]
        loop = feedback_usage["feedback"]
        FEEDBACK_TRACES.extend(
            {"dataset": dataset, "seed": seed, "pool_shots": shots, **row,
             **_samples_calls(feedback_usage, f"round{row['round']}:stage2"),
             "stop_reason": loop["stop_reason"], "token_budget": loop["token_budget"]}
            for row in loop["trace"]
        )  # fmt: skip
    if "synalign_one_stage" in needed:
        # table 4: the one-stage pool (demonstrations -> samples, no attribute summary), the same rows asked
        pools["synalign_one_stage"] = source.pool(seed, subset, subset_embeddings, "synalign_one_stage")
    for name, (generated, used) in pools.items():
        log(
            f"{dataset} seed {seed}: {name} pool from {shots} shots, {len(generated)} rows "
            f"({answer_tokens(used)} tokens, {used['calls']} calls, {used.get('benchmark_wall_s', 0)} s when generated)"
        )
    embeddings = {
        name: {space: embed(generated["text"], space) for space in spaces} for name, (generated, _) in pools.items()
    }
    return pools, embeddings


def run_dataset(dataset: str, args, parameters: dict, spaces: list[str], log) -> list[dict]:
    profile = {**parameters[f"dataset_{dataset}"], "name": dataset}
    # ingestion's own three-part split: held out = heldout_share of each class of train.csv (seed 0, fixed)
    visible, heldout, real_test, _ = ingest_parts(
        ROOT / profile["train_path"],
        ROOT / profile["test_path"],
        profile["text_column"],
        profile["label_column"],
        seed=0,
        heldout_share=args.heldout_share,
    )
    heldout_embeddings = {space: embed(heldout["text"], space) for space in spaces}
    bandwidths = {space: heldout_bandwidth(heldout_embeddings[space], CPU_MEDIAN_MMD, seed=0) for space in spaces}
    test_embeddings = embed(real_test["text"], "minilm")
    budget = dataset_budget(dataset, args)
    BUDGETS[dataset] = budget
    if args.zero_shot_batch > 0:
        ZERO_SHOT_ROWS.append(
            zero_shot_row(
                dataset, profile, zero_shot_sample(real_test, args.zero_shot_rows), parameters["llm"],
                args.zero_shot_batch,
            )
        )  # fmt: skip
        log(f"{dataset}: LLM zero-shot {ZERO_SHOT_ROWS[-1]}")
    test_labels = real_test["label"].astype(str).tolist()
    source = PoolSource(
        parameters, dataset, profile, budget["pool_per_class"], ROOT / "data/03_primary/bench_value",
        params_tag(args.runtime_params),
    )  # fmt: skip
    methods = ["gold", *args.methods]
    # what `kedro run` aligns with: conf/base (+ env, + --params) alignment block, on the CPU
    alignment = AlignmentSettings.model_validate({**parameters["alignment"], "device": "cpu"})
    needed = pools_needed(methods)
    log(
        f"{dataset}: visible {len(visible)}, held out {len(heldout)}, test {len(real_test)}, "
        f"{visible['label'].nunique()} classes; bandwidths {bandwidths}"
    )
    smallest_class = int(visible["label"].value_counts().min())
    shots_here = [s for s in args.shots if s <= smallest_class]
    for s in sorted(set(args.shots) - set(shots_here)):
        SKIPPED.append(f"{dataset}: shots={s} skipped, its smallest class has {smallest_class} visible rows")
        log(SKIPPED[-1])
    if not shots_here:
        return []
    rows = []
    for seed in args.seeds:
        subsets = nested_shots(visible, shots_here, seed, dataset)
        started = time.perf_counter()
        # the pools of each shots value: made from the smallest subset and shared, or (--pool-per-shots) one per
        # shots value, the generator seeing that subset
        pool_shots = {shots: shots if args.pool_per_shots else min(shots_here) for shots in shots_here}
        pools_of = {
            made_from: seed_pools(source, needed, dataset, seed, subsets[made_from], spaces, log)
            for made_from in sorted(set(pool_shots.values()))
        }
        log(f"{dataset} seed {seed}: pools ready in {time.perf_counter() - started:.0f} s here")
        for shots, subset in subsets.items():
            real_embeddings = embed(subset["text"], "minilm")
            pools, pool_embeddings = pools_of[pool_shots[shots]]

            for method in methods:
                source_name = POOL_OF.get(method, "synalign")  # gold: "", no pool, so 0 pool rows and 0 tokens
                drawn_from, drawn_usage = pools.get(source_name, (pd.DataFrame({"label": [], "synthetic_id": []}), {}))
                drawn_embeddings = pool_embeddings.get(source_name, {})
                drawn_labels = drawn_from["label"].astype(str).to_numpy()
                if method == "gold":
                    rows_drawn, synthetic_emb = np.zeros(0, dtype=np.int64), None  # draws from no pool
                    distribution = distribution_row(
                        {s: embed(subset["text"], s) for s in spaces}, heldout_embeddings, bandwidths, seed
                    )
                else:
                    rows_drawn = draw_per_label(
                        method_weights(
                            method, drawn_from, drawn_embeddings["minilm"], subset, real_embeddings, seed, alignment
                        ),
                        drawn_labels, budget["synthetic_per_class"], seed,
                    )
                    synthetic_emb = drawn_embeddings["minilm"][rows_drawn]
                    distribution = distribution_row(
                        {s: drawn_embeddings[s][rows_drawn] for s in spaces}, heldout_embeddings, bandwidths, seed
                    )
                downstream = evaluate_downstream(
                    real_embeddings, subset["label"].astype(str).tolist(), test_embeddings, test_labels, [seed],
                    synthetic_emb=synthetic_emb,
                    synthetic_labels=drawn_labels[rows_drawn].tolist(), resample="none", C=CLASSIFIER_C,
                    max_iter=2000,
                )  # fmt: skip
                tokens = answer_tokens(drawn_usage) if drawn_usage else 0
                rows.append(
                    {
                        "dataset": dataset, "shots": shots, "seed": seed, "method": method,
                        "n_real": len(subset), "n_synthetic": len(rows_drawn),
                        "n_distinct_synthetic": len(set(drawn_from["synthetic_id"].iloc[rows_drawn])),
                        "accuracy": downstream["accuracy"], "macro_f1": downstream["macro_f1"],
                        **distribution,
                        "pool": source_name, "pool_shots": pool_shots[shots] if source_name else np.nan,
                        "pool_size": len(drawn_from), "pool_tokens": tokens,
                        "pool_generation_s": drawn_usage.get("benchmark_wall_s", np.nan),
                        "tokens_per_kept_sample": tokens / len(drawn_from) if len(drawn_from) else np.nan,
                        "ids": "" if method == "gold" else " ".join(drawn_from["synthetic_id"].iloc[rows_drawn].astype(str)),
                    }
                )  # fmt: skip
            summary = {r["method"]: round(r["accuracy"], 3) for r in rows[-len(methods) :]}
            log(f"{dataset} seed {seed} shots {shots}: accuracy {summary}")
    return rows


def plot(table: pd.DataFrame, differences: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.6 * len(datasets), 7.2), squeeze=False)
    for column, dataset in enumerate(datasets):
        part = table[table["dataset"] == dataset]
        top, bottom = axes[0][column], axes[1][column]
        for offset, method in enumerate(METHODS):
            rows = part[part["method"] == method]
            if rows.empty:  # not run: no line, no legend entry
                continue
            shots = sorted(rows["shots"].unique())
            stats = [mean_interval(rows.loc[rows["shots"] == s, "accuracy"]) for s in shots]
            x = np.array(shots, dtype=float) * (1 + 0.04 * (offset - 1.5))
            top.errorbar(x, [m for m, _ in stats], yerr=[np.nan_to_num(h) for _, h in stats], marker="o",
                         capsize=3, label=method, color=f"C{offset}")  # fmt: skip
            if method == "gold":
                continue
            # accuracy only: the file also holds macro-F1 differences, which once drew a zig-zag through both
            diff = differences[
                (differences["dataset"] == dataset)
                & (differences["method"] == method)
                & (differences["metric"] == "accuracy")
                & (differences["baseline"] == "gold")
            ]
            diff = diff.sort_values("shots")
            bottom.errorbar(
                diff["shots"].to_numpy(dtype=float) * (1 + 0.04 * (offset - 2)), diff["mean_difference"],
                yerr=np.nan_to_num((diff["ci_high"] - diff["ci_low"]).to_numpy() / 2), marker="o", capsize=3,
                label=method, color=f"C{offset}",
            )  # fmt: skip
        top.set_xscale("log", base=2)
        bottom.set_xscale("log", base=2)
        bottom.axhline(0.0, color="grey", linewidth=1)
        top.set_title(f"{dataset}: accuracy on real test (95 % CI over seeds)", fontsize=9)
        bottom.set_title("paired difference against gold (95 % CI)", fontsize=9)
        bottom.set_xlabel("real examples per class (shots)")
        top.set_ylabel("accuracy")
        bottom.set_ylabel("accuracy - gold accuracy")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    partial = path.with_name(path.stem + ".partial.png")
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    os.replace(partial, path)


def summary_markdown(
    table: pd.DataFrame, differences: pd.DataFrame, meta: dict, zero_shot: pd.DataFrame | None = None
) -> str:
    """The tables docs/value.md quotes: means over seeds with 95 % t-intervals, and the paired differences."""
    metrics = ["accuracy", "macro_f1"] + [c for c in table.columns if c.startswith("heldout_")]
    lines = [
        f"Produced by `{meta['command']}` at commit {meta['commit']} on {meta['date']} ({meta['wall_s']:.0f} s).",
        "",
        "Means over seeds (± half width of the 95 % t-interval; n = seeds). Gold's distribution metrics are those",
        "of its real subset (n_real rows), the synthetic variants' those of their n_synthetic rows.",
        "",
        "| dataset | shots | method | n | n_synthetic | " + " | ".join(metrics) + " |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in metrics) + " |",
    ]
    for (dataset, shots, method), group in table.groupby(["dataset", "shots", "method"], sort=False):
        cells = []
        for metric in metrics:
            mean, half = mean_interval(group[metric])
            cells.append(f"{mean:.4f}" + ("" if np.isnan(half) else f" ± {half:.4f}"))
        lines.append(
            f"| {dataset} | {shots} | {method} | {len(group)} | {_span(group['n_synthetic'])} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "Paired differences against gold (same data set, shots and seed), mean and 95 % t-interval over seeds:",
        "",
        "| dataset | shots | method | metric | mean difference | 95 % interval |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in differences.itertuples():
        lines.append(
            f"| {row.dataset} | {row.shots} | {row.method} | {row.metric} | {row.mean_difference:+.4f} | "
            f"[{row.ci_low:+.4f}, {row.ci_high:+.4f}] |"
        )
    heldout = [c for c in table.columns if c.startswith("heldout_")]
    present = set(table["method"])
    for method, baseline, scores, title in PAIRED_COMPARISONS:
        if {method, baseline} <= present:
            lines += paired_section(table, method, baseline, (["accuracy", "macro_f1"] if scores else []) + heldout, title)
    if "synalign_feedback" in present:
        lines += tokens_section(table)
    if zero_shot is not None and len(zero_shot):
        lines += [
            "", "The LLM as the classifier (table 1's LLM zero-shot row: no real example, temperature 0, "
            "n_test texts of the test set, drawn with seed 0 when fewer than all; an unanswered text counts as "
            "wrong):", "",
            "| dataset | model | n_test | unanswered | accuracy | macro_f1 | LLM tasks | tokens |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]  # fmt: skip
        for row in zero_shot.itertuples():
            lines.append(
                f"| {row.dataset} | {row.model} | {row.n_test} | {row.n_unanswered} | {row.accuracy:.4f} | "
                f"{row.macro_f1:.4f} | {row.tasks} | {row.tokens} |"
            )
    return "\n".join(lines) + "\n"


# (method, baseline, with accuracy and macro-F1, title) of the paired sections after the differences to gold
PAIRED_COMPARISONS = (
    ("synalign_mmd", "synalign_random", True,
     "synalign_mmd against synalign_random at equal size (paired by seed; accuracy: positive = mmd better; "
     "distances: negative = mmd closer):"),
    ("synalign_feedback", "synalign_mmd", True,
     "synalign_feedback against synalign_mmd at equal tokens (paired by seed; accuracy: positive = feedback "
     "better; distances: negative = feedback closer):"),
    ("synalign_feedback", "synalign_random", True,
     "synalign_feedback against synalign_random (the same drawing rule, equal tokens: what the feedback "
     "rounds add over plain SynAlign generation; signs as above):"),
    ("synalign_feedback_mmd", "synalign_mmd", True,
     "synalign_feedback_mmd against synalign_mmd (both weighted by eq. 10, equal tokens: what generating "
     "where the pool fell short adds to post-hoc alignment; signs as above):"),
    ("synalign_random", "one_stage_random", True,
     "Two-stage against one-stage generation, both drawn uniformly (table 4; equal rows; accuracy: positive = "
     "two-stage better; distances: negative = two-stage closer):"),
    ("synalign_mmd", "one_stage_mmd", True,
     "Two-stage against one-stage generation, both aligned by eq. 10 (table 4; signs as above):"),
    ("one_stage_mmd", "one_stage_random", True,
     "one_stage_mmd against one_stage_random at equal size (does alignment help the one-stage pool too; "
     "signs as above):"),
)  # fmt: skip


def _span(values: pd.Series) -> str:
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}-{high}"


def paired_section(table: pd.DataFrame, method: str, baseline: str, metrics: list[str], title: str) -> list[str]:
    pair = table[table["method"].isin([method, baseline])]
    lines = ["", title, "", "| dataset | shots | metric | mean difference | 95 % interval |", "| --- | --- | --- | --- | --- |"]
    for metric in metrics:
        for row in paired_differences(pair, metric, baseline=baseline).itertuples():
            lines.append(
                f"| {row.dataset} | {row.shots} | {metric} | {row.mean_difference:+.5f} | [{row.ci_low:+.5f}, {row.ci_high:+.5f}] |"
            )
    return lines


def tokens_section(table: pd.DataFrame) -> list[str]:
    """Per data set and pool: rows kept, tokens (cached answers counted) and tokens per kept sample, per seed."""
    pools = table[table["pool"].astype(str) != ""].drop_duplicates(["dataset", "seed", "pool"])
    lines = [
        "", "Pools (one per data set x seed x method; tokens of every answer, re-asks included, cached or not):", "",
        "| dataset | pool | seeds | rows kept per seed | tokens per seed | tokens per kept sample (mean) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for (dataset, pool), group in pools.groupby(["dataset", "pool"], sort=False):
        lines.append(
            f"| {dataset} | {pool} | {len(group)} | {', '.join(map(str, group['pool_size']))} | "
            f"{', '.join(map(str, group['pool_tokens']))} | {group['pool_tokens'].sum() / group['pool_size'].sum():.0f} |"
        )
    return lines


def log_to_mlflow(
    parameters_file: Path, table: pd.DataFrame, differences: pd.DataFrame, meta: dict, files: list[Path]
) -> str:
    import mlflow
    import yaml

    uri = yaml.safe_load(parameters_file.read_text())["server"]["mlflow_tracking_uri"]
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench_value")
    with mlflow.start_run(run_name="bench_value") as run:
        mlflow.log_params({k: str(v)[:500] for k, v in meta["arguments"].items()})
        mlflow.set_tags({"commit": meta["commit"], "command": meta["command"]})
        grouped = table.groupby(["dataset", "shots", "method"])[["accuracy", "macro_f1"]].mean()
        for (dataset, shots, method), values in grouped.iterrows():
            for metric, value in values.items():
                if np.isfinite(value):
                    mlflow.log_metric(f"{dataset}.shots{shots}.{method}.{metric}", float(value))
        for row in differences.itertuples():
            if np.isfinite(row.mean_difference):
                mlflow.log_metric(
                    f"{row.dataset}.shots{row.shots}.{row.method}.{row.metric}_minus_gold",
                    row.mean_difference,
                )
        for file in files:
            mlflow.log_artifact(str(file))
        return run.info.run_id


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "benchmarks", "conf"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        return commit + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["sst2", "ag_news", "amazon_category"])
    parser.add_argument("--shots", nargs="+", type=int, default=[8, 32], help="real examples per class")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of the real subsets")
    parser.add_argument(
        "--pool-per-class", type=int, help="pool rows per class, every data set (default: DATASET_BUDGETS)"
    )
    parser.add_argument(
        "--synthetic-per-class", type=int,
        help="zeta per class, every variant and data set (default: DATASET_BUDGETS)",
    )  # fmt: skip
    parser.add_argument(
        "--pool-per-shots", action="store_true",
        help="a pool per shots value, generated from that subset (default: one from the smallest, shared)",
    )  # fmt: skip
    parser.add_argument("--heldout-share", type=float, default=0.5, help="share of train.csv held out")
    parser.add_argument("--spaces", nargs="+", choices=sorted(SPACES), default=["minilm", "mpnet"])
    parser.add_argument("--env", default="local", help="conf/<env> over conf/base, as kedro run --env")
    parser.add_argument("--out", default="data/08_reporting", help="results folder")
    parser.add_argument("--publish", action="store_true", help="also copy the results to docs/results/")
    parser.add_argument(
        "--zero-shot-batch", type=int, default=10, help="test texts per LLM zero-shot call; 0 = no zero-shot row"
    )
    parser.add_argument(
        "--zero-shot-rows", type=int, default=200,
        help="test texts the LLM zero-shot row labels (drawn with seed 0); 0 = the whole test set",
    )  # fmt: skip
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS[1:], default=DEFAULT_METHODS,
        help="synthetic variants (gold always); only the pools they draw from are generated",
    )
    parser.add_argument(
        "--params", help='parameter overrides as kedro run --params, e.g. "llm.max_tokens=1400" '
        "(pools made under them are saved apart)",
    )
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--from-csv", help="re-make the summaries and plot of an earlier run's benchmark.csv")
    args = parser.parse_args()
    try:
        args.runtime_params = parse_params(args.params)
    except ValueError as error:
        parser.error(str(error))
    if "minilm" not in args.spaces:
        parser.error("--spaces must include minilm (the classifier's and the aligner's space)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the embedded LLM server
    os.chdir(ROOT)  # relative paths of conf/ (cache, models) are the project's

    started = time.perf_counter()
    # the code that runs is the one checked out now: later commits during a long run do not change it
    commit_at_start = git_commit()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {message}", flush=True)

    paths = {name: out / name for name in OUTPUTS}
    if (
        args.from_csv
    ):  # re-make the summaries and the plot of an earlier run; its meta (command, commit) stays
        table = pd.read_csv(args.from_csv)
        zero_shot_file = Path(args.from_csv).with_name("benchmark_zero_shot.csv")
        zero_shot = pd.read_csv(zero_shot_file) if zero_shot_file.is_file() else None
        meta = json.loads(Path(args.from_csv).with_name("benchmark.meta.json").read_text())
        meta["summary_rebuilt"] = {
            "commit": git_commit(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    else:
        parameters = project_parameters(args.env, args.runtime_params)
        rows = []
        try:
            for dataset in args.datasets:
                rows.extend(run_dataset(dataset, args, parameters, args.spaces, log))
        finally:
            llm_server.stop_all()
        table = pd.DataFrame(rows)
        meta = {
            "command": "python "
            + " ".join(shlex.quote(a) for a in ["benchmarks/bench_value.py", *sys.argv[1:]]),
            "arguments": vars(args),
            "commit": commit_at_start,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_s": round(time.perf_counter() - started, 1),
            "llm_model": parameters["llm"]["model"],
            "llm_backend": parameters["llm"]["server"]["backend"],
            "embedders": {space: SPACES[space] for space in args.spaces},
            "classifier": f"logistic regression on MiniLM embeddings, C={CLASSIFIER_C} fixed in advance",
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "rows": len(table),
            "skipped": SKIPPED,
            "budgets": BUDGETS,
        }
        _atomic_write(paths["benchmark.csv"], lambda p: table.to_csv(p, index=False))
        traces = pd.DataFrame(FEEDBACK_TRACES)
        if len(traces):  # without synalign_feedback (--methods) there is no trace to write
            _atomic_write(paths["benchmark_feedback_trace.csv"], lambda p: traces.to_csv(p, index=False))
        zero_shot = pd.DataFrame(ZERO_SHOT_ROWS)
        if len(zero_shot):  # with --zero-shot-batch 0 an earlier run's file stays
            _atomic_write(paths["benchmark_zero_shot.csv"], lambda p: zero_shot.to_csv(p, index=False))
    differences = pd.concat(
        [paired_differences(table, metric) for metric in ("accuracy", "macro_f1")], ignore_index=True
    )
    _atomic_write(paths["benchmark_differences.csv"], lambda p: differences.to_csv(p, index=False))
    plot(table, differences, paths["benchmark.png"])
    _atomic_write(paths["benchmark.md"], lambda p: p.write_text(summary_markdown(table, differences, meta, zero_shot)))
    _atomic_write(paths["benchmark.meta.json"], lambda p: p.write_text(json.dumps(meta, indent=1)))
    if not args.no_mlflow and not args.from_csv:
        meta["mlflow_run_id"] = log_to_mlflow(
            ROOT / "conf/base/mlflow.yml", table, differences, meta, [p for p in paths.values() if p.is_file()]
        )
        _atomic_write(paths["benchmark.meta.json"], lambda p: p.write_text(json.dumps(meta, indent=1)))
    if args.publish:
        results = ROOT / "docs/results"
        for name, path in paths.items():
            if path.is_file() and path.resolve() != (results / name).resolve():
                shutil.copyfile(path, results / name)
    summary = table.groupby(["dataset", "shots", "method"])[
        [c for c in table.columns if c in ("accuracy", "heldout_mmd_minilm", "heldout_mmd_mpnet")]
    ].mean()
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print(
        differences[differences["metric"] == "accuracy"].to_string(
            index=False, float_format=lambda v: f"{v:+.4f}"
        )
    )
    print(json.dumps({k: meta.get(k) for k in ("commit", "date", "wall_s", "rows")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
