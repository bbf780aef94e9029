"""LLMSynthor's loop (Algorithm 1, LLMSYNTHOR.md §1.4): the copula step once, then T iterations of
discrepancy → guidance → LLM plan → sampling → append.

Resume: after every iteration the records and the loop state are written atomically to
``checkpoint_dir/<fingerprint>/``; a killed run restarted with the same inputs continues at the next
iteration and ends with the same records as an uninterrupted one (sampling is seeded per iteration with
``(seed, t)``; LLM answers are replayed from the client's cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..llm_client import ChatTask, LLMUsage
from .discrepancy import l1_discrepancy, positive_mass, render_guidance, trace_row
from .prompts import (
    COPULA_TEMPLATE,
    PROPOSAL_TEMPLATE,
    Proposal,
    copula_messages,
    copula_schema,
    copula_validator,
    plan_validator,
    proposal_messages,
    proposal_schema,
)
from .sampling import greedy_proposals, sample_batch
from .statistics import TargetStatistics
from .variables import empty_records

logger = logging.getLogger(__name__)


class SynthorConfig(BaseModel):
    """Every choice the paper fixes or leaves open (§2, §6), with a default and why."""

    model_config = ConfigDict(extra="forbid")

    n_records: int = Field(2000, ge=1, description="target size; the paper's e-commerce output is 2,000")
    n_iterations: int = Field(100, ge=1, description="T = 100 [paper]; records per iteration = n_records / T")
    n_proposals: int = Field(5, ge=1, description="5 proposals per iteration [paper]")
    n_joints: int = Field(3, ge=0, description="at most 3 groups from the copula step [paper]")
    copula: Literal["llm", "given"] = Field(
        "llm", description="llm: the copula step picks groups (Alg. 1 line 1); given: only the target's joints"
    )
    keep_given_joints: bool = Field(
        True, description="keep supplied joint tables the copula step did not name: dropping them only loses alignment"
    )
    refine_marginals: bool = Field(True, description="two-level binning of numeric marginals, §1.2 [paper]")
    top_k_marginal: int = Field(5, ge=1, description="positive cells shown per marginal; k unstated, §6.1")
    top_k_joint: int = Field(10, ge=1, description="positive cells shown per joint; joints have more cells")
    show_values: bool = Field(True, description="add (target a%, synthetic b%): prompt rule 2 cites frequencies")
    percent_digits: int = Field(1, ge=0, le=6, description="decimals of the percentages; the paper's figures show 0-1")
    reason_max_chars: int = Field(160, ge=0, description="cap on each proposal's reason: tokens cost time on CPU")
    record_noun: str = Field("data", description="what a record is, in the prompt's first sentence")
    on_failed_plan: Literal["defer", "greedy"] = Field(
        "defer",
        description="after the client's re-asks: defer = the batch moves to the next iteration (the last one may "
        "end short); greedy = a rule-based plan of the largest positive gaps, flagged in the trace",
    )
    seed: int = Field(0, description="sampling seed; iteration t draws with default_rng((seed, t))")
    copula_template: str = COPULA_TEMPLATE
    proposal_template: str = PROPOSAL_TEMPLATE


@dataclass
class SynthorResult:
    records: pd.DataFrame
    trace: pd.DataFrame
    plans: list[dict]
    report: dict


def batch_sizes(n_records: int, n_iterations: int) -> list[int]:
    """The fixed target size split into T near-equal batches (the first ``n % T`` one larger)."""
    base, extra = divmod(n_records, n_iterations)
    return [base + (1 if t < extra else 0) for t in range(n_iterations)]


def fingerprint(config: SynthorConfig, target: TargetStatistics, identity: str) -> str:
    payload = json.dumps([config.model_dump(), target.to_dict(), identity], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_checkpoint(folder: Path, records: pd.DataFrame, state: dict) -> None:
    """Records first, then the state naming how many records are valid: a kill between the two leaves the
    previous state, which truncates the longer records file on resume."""
    _atomic_write_bytes(folder / "records.parquet", records.to_parquet(index=False))
    _atomic_write_bytes(folder / "state.json", json.dumps(state, default=float).encode())


def _load_checkpoint(folder: Path) -> tuple[pd.DataFrame, dict] | None:
    state_path = folder / "state.json"
    if not state_path.exists():
        return None
    state = json.loads(state_path.read_text())
    records = pd.read_parquet(folder / "records.parquet").iloc[: state["n_records"]].reset_index(drop=True)
    return records, state


def copula_step(client, target: TargetStatistics, config: SynthorConfig, usage: LLMUsage) -> tuple[list[tuple[str, ...]], dict]:
    """C ~ LLM(p_copula(S_target, V)) (Alg. 1 line 1, §1.3): the statistics' summary goes inside the prompt."""
    if config.copula == "given" or config.n_joints == 0:
        return [], {"copula": config.copula, "groups": []}
    variables = target.variables
    task = ChatTask(
        "llmsynthor:copula",
        copula_messages(variables, target.summary(), config.n_joints, config.copula_template),
        "copula",
        copula_schema(variables, config.n_joints),
        copula_validator(variables, config.n_joints),
    )
    results, used = client.run([task], description="llmsynthor:copula")
    usage.add(used)
    result = results[0]
    if not result.ok:
        logger.warning("Copula step failed (%s): continuing with the supplied joints only", result.error)
        return [], {"copula": "llm", "groups": [], "failed": result.error}
    return list(result.value), {"copula": "llm", "groups": [list(g) for g in result.value]}


def run_llmsynthor(
    client, target: TargetStatistics, config: SynthorConfig, checkpoint_dir: str | Path | None = None
) -> SynthorResult:
    """Algorithm 1. ``client`` is a :class:`~synalign_kedro.core.llm_client.LLMClient` (or any object with its
    ``identity`` and ``run(tasks, description)``)."""
    variables = target.variables
    usage = LLMUsage()
    sizes = batch_sizes(config.n_records, config.n_iterations)
    folder = Path(checkpoint_dir) / fingerprint(config, target, client.identity) if checkpoint_dir else None
    loaded = _load_checkpoint(folder) if folder else None
    if loaded:
        records, state = loaded
        groups = [tuple(g) for g in state["groups"]]
        copula_report = state["copula_report"]
        logger.info("LLMSynthor: resuming after iteration %d from %s", state["t_done"], folder)
    else:
        groups, copula_report = copula_step(client, target, config, usage)
        records = empty_records(variables)
        state = {"t_done": 0, "n_records": 0, "deferred": 0, "trace": [], "plans": [], "groups": [list(g) for g in groups], "copula_report": copula_report, "resumed_at": []}
    target_c, refine_report = target.with_groups(groups, keep_given=config.keep_given_joints)
    if loaded:
        state["resumed_at"].append(state["t_done"])
    validate = plan_validator(variables, config.n_proposals)
    schema = proposal_schema(variables, config.n_proposals, config.reason_max_chars)
    for t in range(state["t_done"] + 1, config.n_iterations + 1):
        batch = sizes[t - 1] + state["deferred"]
        stats = target_c.statistics(records, refine_marginals=config.refine_marginals)
        marginal_guide, joint_guide = render_guidance(
            stats, config.top_k_marginal, config.top_k_joint, config.show_values, config.percent_digits
        )
        task = ChatTask(
            f"llmsynthor:proposal:{t}",
            proposal_messages(
                variables, marginal_guide, joint_guide, config.n_proposals, batch, len(records),
                config.record_noun, config.proposal_template,
            ),
            "plan",
            schema,
            validate,
            seed_offset=t,
        )
        results, used = client.run([task], description=f"llmsynthor:t={t}")
        usage.add(used)
        result = results[0]
        source, repairs, dropped = "llm", [], 0
        if result.ok:
            proposals: list[Proposal] = result.value.proposals
            repairs, dropped = result.value.repairs, result.value.dropped
        elif config.on_failed_plan == "greedy":
            proposals, source = greedy_proposals(stats, variables, config.n_proposals), "greedy_fallback"
        else:
            proposals, source = [], "failed_deferred"
        rng = np.random.default_rng((config.seed, t))
        if proposals:
            new, counts = sample_batch(proposals, batch, variables, rng)
            records = pd.concat([records, new], ignore_index=True) if len(records) else new
            state["deferred"] = 0
        else:
            counts = []
            state["deferred"] = batch
        row = {
            "iteration": t,
            "n_records": len(records),
            "batch": int(sum(counts)),
            "plan_source": source,
            "n_proposals": len(proposals),
            "dropped_proposals": dropped,
            "repairs": len(repairs),
            "reasks": used.reasks,
            "discrepancy_l1": l1_discrepancy(stats_main := target_c.statistics(records, refine_marginals=False)),
            "positive_gap": positive_mass(stats_main),
            **trace_row(target_c, records, stats_main),
        }
        state["trace"].append(row)
        state["plans"].append(
            {"iteration": t, "source": source, "counts": counts, "repairs": repairs, "error": result.error,
             "proposals": [p.as_dict() for p in proposals]}
        )
        state["t_done"], state["n_records"] = t, len(records)
        if folder:
            _save_checkpoint(folder, records, state)
        logger.info("LLMSynthor t=%d/%d: %d records, discrepancy %.4f (%s)", t, config.n_iterations, len(records), row["discrepancy_l1"], source)
    report = {
        "n_records": len(records),
        "n_iterations": config.n_iterations,
        "copula": copula_report,
        "joints": [list(g) for g in target_c.joints],
        "joint_refinement": refine_report,
        "failed_plans": sum(1 for p in state["plans"] if p["source"] != "llm"),
        "repairs": sum(len(p["repairs"]) for p in state["plans"]),
        "resumed_at": state["resumed_at"],
        "usage": usage.as_dict(),
        "checkpoint": str(folder) if folder else None,
    }
    return SynthorResult(records, pd.DataFrame(state["trace"]), state["plans"], report)
