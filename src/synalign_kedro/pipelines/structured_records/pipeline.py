"""Wiring: target statistics -> LLMSynthor (trace, plot) and the baselines -> one evaluation table -> one
HTML run report (``structured_run_report``).

``kedro run --pipeline structured_records``; inputs: ``structured_source`` (a table, or aggregates through a
YAML / JSON dataset) and ``params:structured_records``; the LLM nodes are tagged ``llm``.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from .nodes import (
    build_structured_report,
    build_target_statistics,
    evaluate_structured_records,
    generate_baseline,
    plot_convergence,
    synthesize_records,
)

BASELINES = ("independent_marginals", "ipf", "gaussian_copula", "llm_icl")


def _baseline_node(name: str):
    func = update_wrapper(partial(generate_baseline, baseline=name), generate_baseline)
    return node(
        func,
        inputs=["structured_source", "params:structured_records", "params:llm"],
        outputs=[f"structured_records_{name}", f"structured_baseline_report_{name}"],
        name=f"baseline_{name}",
        tags=["structured_baselines"] + (["llm"] if name == "llm_icl" else []),
    )


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(build_target_statistics, ["structured_source", "params:structured_records"], "structured_target_statistics", name="build_target_statistics"),
            node(
                synthesize_records,
                ["structured_source", "params:structured_records", "params:llm"],
                [
                    "structured_records_llmsynthor",
                    "structured_trace",
                    "structured_trace_metrics",
                    "structured_plans",
                    "structured_report",
                ],
                name="synthesize_records",
                tags=["llm"],
            ),
            *(_baseline_node(name) for name in BASELINES),
            node(
                evaluate_structured_records,
                ["structured_source", "params:structured_records", "structured_records_llmsynthor", *(f"structured_records_{n}" for n in BASELINES)],
                "structured_evaluation",
                name="evaluate_structured_records",
            ),
            node(plot_convergence, "structured_trace", "structured_convergence_plot", name="plot_convergence"),
            node(
                build_structured_report,
                {
                    "target_statistics": "structured_target_statistics",
                    "trace": "structured_trace",
                    "synthor_report": "structured_report",
                    "evaluation": "structured_evaluation",
                    "params": "params:structured_records",
                    "llmsynthor": "structured_records_llmsynthor",
                    **{f"records_{n}": f"structured_records_{n}" for n in BASELINES},
                    **{f"report_{n}": f"structured_baseline_report_{n}" for n in BASELINES},
                },
                "structured_run_report",
                name="build_structured_report",
            ),
        ],
        tags=["structured_records"],
    )
