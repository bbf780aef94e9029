"""Thin node: pick and validate the active dataset profile, call ``core.ingestion``, return every output."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synalign_kedro.core.ingestion import IngestionError, ingest_parts


class DatasetProfile(BaseModel):
    """One ``dataset_<name>`` parameter block (conf/base/parameters_dataset_*.yml, docs/ingestion.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    train_path: str = Field(min_length=1)
    test_path: str | None = None
    text_column: str = Field(min_length=1)
    label_column: str = Field(min_length=1)
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl"] = "auto"
    test_size: float = Field(0.2, gt=0, lt=1)
    heldout_share: float = Field(0.2, ge=0, lt=1)
    min_train_rows_per_class: int = Field(1, ge=1)
    min_test_rows_per_class: int = Field(1, ge=0)
    domain: str = ""
    description: str = ""
    labels: dict[str, str | None] | None = None
    attributes: list[str] = Field(default_factory=list)
    llm_max_tokens: int | None = Field(
        None, ge=1, description="generation calls on this data set ask for at least this many tokens (long texts)"
    )


def _validation_message(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, item['loc'])) or 'profile'}: {item['msg']} (got {item.get('input')!r})"
        for item in error.errors()
    )


def resolve_dataset_profile(dataset: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The active data set's profile: the top-level parameter ``dataset_<name>`` plus its ``name``, validated."""
    key = f"dataset_{dataset}"
    if key not in parameters:
        known = sorted(k.removeprefix("dataset_") for k in parameters if k.startswith("dataset_"))
        raise IngestionError(
            f"unknown dataset {dataset!r}: no parameter {key!r}; known: {known}. Add a file "
            f"conf/local/parameters_dataset_{dataset}.yml with a top-level key {key!r} (see docs/ingestion.md)"
        )
    try:
        profile = DatasetProfile.model_validate({**(parameters[key] or {}), "name": dataset})
    except ValidationError as error:
        raise IngestionError(f"dataset profile {key!r} is invalid: {_validation_message(error)}") from None
    return profile.model_dump()


def ingest_real_data(
    dataset: str, parameters: dict[str, Any], seed: int
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Every output of ingestion from one node, so a failure (bad profile or bad data) saves none of them:
    the profile, ``real_train`` (what the method may see), ``real_heldout`` (never fitted on: the reference
    of the distribution metrics), ``real_test`` (the classifier's test set) and the report."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise IngestionError(f"parameter 'seed' must be an integer, got {seed!r}; e.g. --params seed=42")
    profile = resolve_dataset_profile(dataset, parameters)
    real_train, real_heldout, real_test, report = ingest_parts(
        train_path=profile["train_path"],
        test_path=profile["test_path"],
        text_column=profile["text_column"],
        label_column=profile["label_column"],
        fmt=profile["format"],
        test_size=profile["test_size"],
        seed=seed,
        min_train_rows_per_class=profile["min_train_rows_per_class"],
        min_test_rows_per_class=profile["min_test_rows_per_class"],
        heldout_share=profile["heldout_share"],
    )
    report["dataset"] = profile["name"]
    return profile, real_train, real_heldout, real_test, report
