"""Wiring of the `ab_export` pipeline (SynAlign sec. 4.6): privacy checks, control / treatment export,
offline A/B estimate, manifest and run report."""

from kedro.pipeline import Node, Pipeline

from synalign_kedro.core.variants import (
    GENERATION_METHODS,
    SYNTHETIC_VARIANTS,
    usage_dataset,
    variant_dataset,
)

from .nodes import (
    build_ab_export,
    build_manifest,
    build_run_report,
    check_variant_privacy,
    embed_variant,
    estimate_offline_ab,
    select_variant,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                select_variant,
                inputs={"params": "params:ab_export"} | {v: variant_dataset(v) for v in SYNTHETIC_VARIANTS},
                outputs="ab_export_variant",
                name="select_ab_variant",
            ),
            Node(
                embed_variant,
                inputs=["ab_export_variant", "params:embedding"],
                outputs="ab_export_variant_embeddings",
                name="embed_ab_variant",
                tags=["gpu"],
            ),
            Node(
                check_variant_privacy,
                inputs=[
                    "ab_export_variant", "real_train", "real_test", "ab_export_variant_embeddings",
                    "real_train_embeddings", "real_test_embeddings", "params:ab_export",
                ],  # fmt: skip
                outputs=[
                    "ab_export_privacy_report", "ab_export_flagged_ids", "ab_export_privacy_summary",
                    "ab_export_privacy_metrics",
                ],  # fmt: skip
                name="check_ab_privacy",
            ),
            Node(
                build_ab_export,
                inputs=["real_train", "ab_export_variant", "ab_export_flagged_ids", "params:ab_export", "params:seed"],
                outputs=[
                    "ab_export_control", "ab_export_control_jsonl", "ab_export_treatment",
                    "ab_export_treatment_jsonl", "ab_export_selection",
                ],  # fmt: skip
                name="build_ab_export",
            ),
            Node(
                estimate_offline_ab,
                inputs=[
                    "ab_export_control", "ab_export_treatment", "real_train", "real_train_embeddings",
                    "ab_export_variant", "ab_export_variant_embeddings", "real_test", "real_test_embeddings",
                    "params:ab_export", "params:seed",
                ],  # fmt: skip
                outputs=["ab_export_estimate", "ab_export_estimate_metrics"],
                name="estimate_offline_ab",
            ),
            Node(
                build_manifest,
                inputs=[
                    "ab_export_control_file", "ab_export_control_jsonl_file", "ab_export_treatment_file",
                    "ab_export_treatment_jsonl_file", "ab_export_privacy_report_file", "ab_export_control",
                    "ab_export_treatment", "ab_export_selection", "ab_export_privacy_summary",
                    "ab_export_estimate", "evaluation_table", "params:ab_export", "params:seed", "params:dataset",
                ],  # fmt: skip
                outputs="ab_export_manifest",
                name="build_ab_manifest",
            ),
            Node(
                build_run_report,
                inputs={
                    "evaluation_table": "evaluation_table",
                    "coverage_curves_plot": "coverage_curves_plot",
                    "evaluation_tsne_plot": "evaluation_tsne_plot",
                    "alignment_loss_plot": "alignment_loss_plot",
                    "alignment_weights_plot": "alignment_weights_plot",
                    "synthetic": "ab_export_variant",
                    "real_train": "real_train",
                    "privacy_flagged": "ab_export_privacy_report",
                    "manifest": "ab_export_manifest",
                    "params": "params:ab_export",
                    "seed": "params:seed",
                }
                | {usage_dataset(method): usage_dataset(method) for method in GENERATION_METHODS},
                outputs="run_report",
                name="build_run_report",
            ),
        ]
    )
