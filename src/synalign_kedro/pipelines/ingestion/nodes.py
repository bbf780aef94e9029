"""Thin nodes: unpack parameters, call ``core.ingestion``, return data."""

from __future__ import annotations

from typing import Any

import pandas as pd

from synalign_kedro.core.ingestion import IngestionError, ingest


def resolve_dataset_profile(dataset: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The active data set's profile: the top-level parameter ``dataset_<name>`` plus its ``name``."""
    key = f"dataset_{dataset}"
    if key not in parameters:
        known = sorted(k.removeprefix("dataset_") for k in parameters if k.startswith("dataset_"))
        raise IngestionError(
            f"unknown dataset {dataset!r}: no parameter {key!r}; known: {known}. Add a file "
            f"conf/local/parameters_dataset_{dataset}.yml with a top-level key {key!r} (see docs/ingestion.md)"
        )
    profile = dict(parameters[key])
    profile["name"] = dataset
    for required in ("train_path", "text_column", "label_column"):
        if not profile.get(required):
            raise IngestionError(f"dataset profile {key!r} has no {required!r}")
    return profile


def ingest_real_data(profile: dict[str, Any], seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    real_train, real_test, report = ingest(
        train_path=profile["train_path"],
        test_path=profile.get("test_path"),
        text_column=profile["text_column"],
        label_column=profile["label_column"],
        fmt=profile.get("format", "auto"),
        test_size=float(profile.get("test_size", 0.2)),
        seed=seed,
    )
    report["dataset"] = profile["name"]
    return real_train, real_test, report
