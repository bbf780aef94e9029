"""Reading, validating, normalising, deduplicating and splitting the real labelled data (D_ori, sec. 3.1)
into three disjoint parts: ``real_train`` (what the method may see), ``real_heldout`` (never fitted on: the
reference of the distribution metrics) and ``real_test`` (the classifier's test set).

Every check that makes the data unusable raises :class:`IngestionError` with a message that names the file,
says what is wrong and what to do; nothing is returned (so the pipeline saves nothing) until every check has
passed. Problems that leave the data usable are logged as warnings and listed under ``warnings`` in the
ingestion report. docs/ingestion.md lists which inputs are refused and which are warned about.
"""

from __future__ import annotations

import hashlib
import logging
import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

# reading the file (format, compression, delimiter) lives in table_reading.py; re-exported for the ingestion API
from .table_reading import (  # noqa: F401 (re-exports)
    _NUMBER,
    _WHITESPACE,
    COMPRESSION_SUFFIXES,
    MAX_CLASS_SHARE,
    MAX_LISTED_ROWS,
    MIN_CLASSES_FOR_TEXT_CHECK,
    SUPPORTED_FORMATS,
    IngestionError,
    _format_rows,
    _warn,
    detect_format,
    read_table,
)

logger = logging.getLogger(__name__)


def normalise_text(text: str) -> str:
    """Unicode NFC, whitespace runs collapsed to one space, trimmed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def row_id(split: str, text: str) -> str:
    """Stable id from the split and the normalised text (texts are unique within a split after dedup)."""
    return f"{split}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


@dataclass
class SplitReport:
    rows_read: int = 0
    empty_text_dropped: int = 0
    duplicates_dropped: int = 0
    conflicting_label_texts: int = 0
    overlap_with_train_dropped: int = 0
    rows_kept: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)


def _is_number(values: pd.Series) -> pd.Series:
    return values.str.fullmatch(_NUMBER)


def _text_like_columns(frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Columns of strings that are mostly not numbers: what a misconfigured ``text_column`` probably meant."""
    found = []
    for column in frame.columns:
        if column in exclude or pd.api.types.is_numeric_dtype(frame[column].dtype):
            continue
        values = frame[column].dropna()
        values = values[values.map(lambda v: isinstance(v, str))].str.strip()
        values = values[values != ""]
        if len(values) and not _is_number(values).mean() > 0.5:
            found.append(str(column))
    return found


def _check_text_column(
    frame: pd.DataFrame, path: Path, text_column: str, label_column: str, warnings: list[str]
) -> None:
    """Refuse a text column of numbers (an id or score column picked by mistake); warn when most values are numbers."""
    column = frame[text_column]
    candidates = _text_like_columns(frame, {text_column, label_column})
    suggestion = f" (columns that hold text: {candidates})" if candidates else ""
    what_to_do = f"point `text_column` in the dataset profile at the column that holds the texts{suggestion}"
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        examples = column.dropna().head(3).tolist()
        raise IngestionError(
            f"{path}: column {text_column!r} holds {column.dtype} values ({examples}), not text; {what_to_do}"
        )
    values = column.dropna()
    structured = values.map(lambda v: isinstance(v, (dict, list)))
    if structured.any():
        rows = [int(i) + 1 for i in structured.to_numpy().nonzero()[0]]
        raise IngestionError(
            f"{path}: column {text_column!r} holds JSON objects or lists, not text, on {len(rows)} row(s): data rows "
            f"{_format_rows(rows)}; {what_to_do}"
        )
    strings = values.astype(str).str.strip()
    strings = strings[strings != ""]
    if strings.empty:
        return
    numeric = _is_number(strings)
    if numeric.all():
        raise IngestionError(
            f"{path}: every value of column {text_column!r} is a number (e.g. {strings.head(3).tolist()}), not text; "
            f"{what_to_do}"
        )
    if numeric.mean() > 0.5:
        _warn(
            warnings,
            f"{path}: {int(numeric.sum())} of {len(strings)} values of column {text_column!r} are numbers; check that "
            "it is the text column",
        )


def validate_columns(
    frame: pd.DataFrame, path: Path, text_column: str, label_column: str, warnings: list[str] | None = None
) -> pd.DataFrame:
    """Check the columns and labels; return a frame with columns ``text`` and ``label`` (str)."""
    warnings = [] if warnings is None else warnings
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        raise IngestionError(
            f"{path}: missing column(s) {missing}; the file has columns {list(map(str, frame.columns))}. "
            "Set `text_column` / `label_column` in the dataset profile"
        )
    duplicates = frame.attrs.get("duplicate_columns", {})
    for role, column in (("texts", text_column), ("labels", label_column)):
        if column in duplicates:
            raise IngestionError(
                f"{path}: column {column!r} occurs {duplicates[column]}, so it is ambiguous which one holds the "
                f"{role}: rename or drop the extra column"
            )
    for column, where in duplicates.items():
        _warn(warnings, f"{path}: column {column!r} occurs {where}; it is not used (only the first is read)")
    labels = frame[label_column]
    label_text = labels.astype("string").str.strip()
    missing_label = labels.isna().to_numpy() | (label_text.fillna("") == "").to_numpy()
    if missing_label.any():
        rows = [int(i) + 1 for i in missing_label.nonzero()[0]]
        raise IngestionError(
            f"{path}: column {label_column!r} has no label on {len(rows)} row(s): data rows {_format_rows(rows)} "
            "(1-based, header not counted); every row needs a label"
        )
    n_classes = label_text.nunique()
    if n_classes > MIN_CLASSES_FOR_TEXT_CHECK and n_classes > MAX_CLASS_SHARE * len(label_text):
        raise IngestionError(
            f"{path}: column {label_column!r} has {n_classes} distinct labels for {len(label_text)} rows: it holds "
            "free text, not class labels; check `label_column` (and `text_column`) in the dataset profile"
        )
    _check_text_column(frame, path, text_column, label_column, warnings)
    texts = frame[text_column].map(lambda v: v if isinstance(v, str) else ("" if pd.isna(v) else str(v)))
    return pd.DataFrame({"text": texts.astype(str), "label": label_text.astype(str)})


def clean_split(frame: pd.DataFrame, split: str) -> tuple[pd.DataFrame, SplitReport]:
    """Normalise texts, drop empty ones and exact duplicates (first occurrence kept); add ``row_id``."""
    report = SplitReport(rows_read=len(frame))
    frame = frame.assign(text=frame["text"].map(normalise_text))
    empty = frame["text"] == ""
    report.empty_text_dropped = int(empty.sum())
    frame = frame.loc[~empty]
    labels_per_text = frame.groupby("text")["label"].nunique()
    report.conflicting_label_texts = int((labels_per_text > 1).sum())
    if report.conflicting_label_texts:
        logger.warning(
            "%s: %d text(s) occur with more than one label; the first occurrence is kept",
            split,
            report.conflicting_label_texts,
        )
    deduplicated = frame.drop_duplicates(subset="text", keep="first")
    report.duplicates_dropped = len(frame) - len(deduplicated)
    result = deduplicated.reset_index(drop=True)
    result.insert(0, "row_id", [row_id(split, t) for t in result["text"]])
    report.rows_kept = len(result)
    report.label_counts = _label_counts(result)
    return result, report


def _label_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()}


def _check_split_size(train_path: Path, n_rows: int, classes: list[str], test_size: float) -> None:
    """A stratified split needs a test row and a train row per class: sklearn takes ceil(test_size * n) test
    rows and refuses fewer than the number of classes on either side; say so with the file and the fix."""
    n_test = math.ceil(test_size * n_rows)
    n_train = n_rows - n_test
    k = len(classes)
    if n_test >= k and n_train >= k:
        return
    if 2 * k > n_rows:
        fix = f"add rows (at least {2 * k} in all) or give a test_path"
    elif n_test < k:
        lowest = math.ceil(100 * k / n_rows) / 100
        fix = f"set test_size to at least {lowest} in the dataset profile, add rows, or give a test_path"
    else:
        highest = math.floor(100 * (n_rows - k) / n_rows) / 100
        fix = f"set test_size to at most {highest} in the dataset profile, add rows, or give a test_path"
    raise IngestionError(
        f"{train_path}: a stratified split with test_size={test_size} of {n_rows} rows (after cleaning) gives "
        f"{n_test} test and {n_train} train rows for {k} classes {classes}; every class needs at least one row on "
        f"each side: {fix}"
    )


def _check_rows_per_class(
    where: str, classes: list[str], train: pd.DataFrame, test: pd.DataFrame,
    min_train_rows_per_class: int, min_test_rows_per_class: int, fix: str, warnings: list[str],
) -> None:  # fmt: skip
    """Refuse classes under the minimum train / test rows (a class without test rows cannot be evaluated);
    warn about classes with a single train row (every demonstration batch of that class is that one text)."""
    train_counts, test_counts = _label_counts(train), _label_counts(test)
    short = [
        f"{label!r}: {train_counts.get(label, 0)} train, {test_counts.get(label, 0)} test"
        for label in classes
        if train_counts.get(label, 0) < min_train_rows_per_class
        or test_counts.get(label, 0) < min_test_rows_per_class
    ]
    if short:
        raise IngestionError(
            f"{where}: {len(short)} class(es) with too few rows: {'; '.join(short[:MAX_LISTED_ROWS])}. Every class "
            f"needs at least {min_train_rows_per_class} train row(s) (demonstrations) and {min_test_rows_per_class} "
            f"test row(s) (per-class evaluation): {fix}"
        )
    single = [label for label in classes if train_counts.get(label, 0) == 1]
    if single:
        _warn(
            warnings,
            f"{where}: class(es) {single} have a single train row: every demonstration of them is that text",
        )
    untested = [label for label in classes if test_counts.get(label, 0) == 0]
    if untested:
        _warn(warnings, f"{where}: class(es) {untested} have no test rows: their accuracy is not measured")


class RealParts(NamedTuple):
    """The three disjoint parts of the real data and the ingestion report (:func:`ingest_parts`)."""

    train: pd.DataFrame
    heldout: pd.DataFrame
    test: pd.DataFrame
    report: dict


def hold_out(
    train: pd.DataFrame, heldout_share: float, seed: int, where: str, min_train_rows_per_class: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, heldout)``: a stratified share of the cleaned train rows that nothing is fitted on (the
    reference of the distribution metrics). Each class gives ``round(heldout_share * n)`` of its ``n`` rows,
    at least 1 when ``heldout_share > 0``, and keeps at least ``max(1, min_train_rows_per_class)`` train rows;
    a class too small for both is an :class:`IngestionError` naming ``where``, the class and its counts.
    Held-out rows get the row id ``heldout-<hash of the text>``; both parts keep the input's row order."""
    if not 0 <= heldout_share < 1:
        raise IngestionError(f"{where}: heldout_share must be in [0, 1), got {heldout_share}")
    empty = train.iloc[:0].reset_index(drop=True)
    if heldout_share == 0:
        return train.reset_index(drop=True), empty
    keep = max(1, min_train_rows_per_class)
    counts = _label_counts(train)
    short = {label: count for label, count in counts.items() if count < keep + 1}
    if short:
        listed = "; ".join(
            f"{label!r}: {n} train row(s)" for label, n in list(short.items())[:MAX_LISTED_ROWS]
        )
        raise IngestionError(
            f"{where}: cannot hold out heldout_share={heldout_share} of each class: {len(short)} class(es) with "
            f"too few train rows: {listed}. Every class needs at least {keep + 1} ({keep} to train on, 1 held out "
            "for the distribution metrics): add rows of these classes, remove them, or set heldout_share: 0 in the "
            "dataset profile (then the evaluation has no distance to held-out real data)"
        )
    rng = np.random.default_rng(seed)
    labels = train["label"].astype(str).to_numpy()
    held = np.zeros(len(train), dtype=bool)
    for label in sorted(counts):
        rows = np.flatnonzero(labels == label)
        count = min(len(rows) - keep, max(1, int(round(heldout_share * len(rows)))))
        held[rng.choice(rows, size=count, replace=False)] = True
    heldout = train.loc[held].reset_index(drop=True)
    heldout["row_id"] = [row_id("heldout", t) for t in heldout["text"]]
    return train.loc[~held].reset_index(drop=True), heldout


def ingest(
    train_path: str | Path,
    test_path: str | Path | None,
    text_column: str = "text",
    label_column: str = "label",
    fmt: str | None = "auto",
    test_size: float = 0.2,
    seed: int = 42,
    min_train_rows_per_class: int = 1,
    min_test_rows_per_class: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``(real_train, real_test, report)`` with nothing held out: :func:`ingest_parts` with
    ``heldout_share=0`` (for callers that make their own split of the train rows)."""
    parts = ingest_parts(
        train_path, test_path, text_column, label_column, fmt, test_size, seed, min_train_rows_per_class,
        min_test_rows_per_class, heldout_share=0.0,
    )  # fmt: skip
    return parts.train, parts.test, parts.report


def ingest_parts(
    train_path: str | Path,
    test_path: str | Path | None,
    text_column: str = "text",
    label_column: str = "label",
    fmt: str | None = "auto",
    test_size: float = 0.2,
    seed: int = 42,
    min_train_rows_per_class: int = 1,
    min_test_rows_per_class: int = 1,
    heldout_share: float = 0.2,
) -> RealParts:
    """Read, validate and clean the real data; return its three disjoint parts and the report:
    ``real_train`` (what the method may see: tracker, generator, aligner, classifier), ``real_heldout``
    (``heldout_share`` of each class of the cleaned train rows, never fitted on: the reference of the
    distribution metrics) and ``real_test`` (the classifier's test set).

    Test rows whose text also occurs in train are dropped (leakage). With no ``test_path`` a stratified
    split of the train file (``test_size``, ``seed``) is made after cleaning; the held-out share is then
    taken from the remaining train rows (:func:`hold_out`, ``seed``). Every class must keep
    ``min_train_rows_per_class`` train rows and ``min_test_rows_per_class`` test rows.
    """
    warnings: list[str] = []
    train_path = Path(train_path)
    train_raw = validate_columns(
        read_table(train_path, fmt, warnings), train_path, text_column, label_column, warnings
    )
    train, train_report = clean_split(train_raw, "train")
    if train.empty:
        raise IngestionError(f"{train_path}: no row has a non-empty {text_column!r}")
    classes = sorted(train["label"].unique())
    if len(classes) < 2:
        raise IngestionError(
            f"{train_path}: column {label_column!r} has a single class {classes}; a classification data set needs "
            "at least two labels"
        )
    report: dict = {"train_path": str(train_path), "test_path": str(test_path) if test_path else None}

    if test_path:
        test_path = Path(test_path)
        test_raw = validate_columns(
            read_table(test_path, fmt, warnings), test_path, text_column, label_column, warnings
        )
        test, test_report = clean_split(test_raw, "test")
        overlap = test["text"].isin(set(train["text"]))
        test_report.overlap_with_train_dropped = int(overlap.sum())
        test = test.loc[~overlap].reset_index(drop=True)
        unknown = sorted(set(test["label"]) - set(classes))
        if unknown:
            raise IngestionError(
                f"{test_path}: column {label_column!r} has label(s) {unknown} that never occur in {train_path}"
            )
        if test.empty:
            raise IngestionError(f"{test_path}: no test rows left after cleaning")
        test_report.rows_kept = len(test)
        test_report.label_counts = _label_counts(test)
        report["split"] = "given"
        where = f"{train_path} and {test_path}"
        fix = f"add rows of these classes to {test_path} (or {train_path}), or remove the classes from both files"
    else:
        needed = max(2, min_train_rows_per_class + min_test_rows_per_class)
        small = {k: v for k, v in train_report.label_counts.items() if v < needed}
        if small:
            raise IngestionError(
                f"{train_path}: cannot make a stratified test split: label(s) with fewer than {needed} rows: {small} "
                f"(each class needs {max(1, min_train_rows_per_class)} for train and {max(1, min_test_rows_per_class)} "
                "for test); add rows of these classes, remove them, or give a test_path"
            )
        _check_split_size(train_path, len(train), classes, test_size)
        try:
            train_part, test_part = train_test_split(
                train, test_size=test_size, random_state=seed, stratify=train["label"]
            )
        except ValueError as error:  # a case the checks above do not foresee: still name the file
            raise IngestionError(
                f"{train_path}: cannot make a stratified split with test_size={test_size}: {error}; change test_size, "
                "add rows, or give a test_path"
            ) from None
        test = test_part.reset_index(drop=True)
        test["row_id"] = [row_id("test", t) for t in test["text"]]
        train = train_part.reset_index(drop=True)
        test_report = SplitReport(rows_read=0, rows_kept=len(test), label_counts=_label_counts(test))
        report["split"] = f"stratified {test_size:.0%} of train (seed {seed})"
        where = f"{train_path} (stratified split, test_size={test_size}, seed {seed})"
        fix = "add rows of these classes, remove them, raise test_size, or give a test_path"

    holdout_where = (
        str(train_path) if test_path else f"{train_path} (train rows after the stratified test split)"
    )
    train, heldout = hold_out(train, heldout_share, seed, holdout_where, min_train_rows_per_class)
    train_report.rows_kept = len(train)
    train_report.label_counts = _label_counts(train)
    heldout_report = SplitReport(rows_read=0, rows_kept=len(heldout), label_counts=_label_counts(heldout))
    _check_rows_per_class(
        where, classes, train, test, min_train_rows_per_class, min_test_rows_per_class, fix, warnings
    )
    report["heldout_share"] = heldout_share
    report["train"] = train_report.__dict__
    report["heldout"] = heldout_report.__dict__
    report["test"] = test_report.__dict__
    report["warnings"] = warnings
    for name, part in (("train", train_report), ("test", test_report)):
        logger.info(
            "%s: read %d, dropped %d empty, %d duplicate, %d overlapping with train; kept %d",
            name, part.rows_read, part.empty_text_dropped, part.duplicates_dropped,
            part.overlap_with_train_dropped, part.rows_kept,
        )  # fmt: skip
    logger.info(
        "heldout: %d rows (%s of each class of train, never fitted on) %s",
        heldout_report.rows_kept, f"{heldout_share:.0%}", heldout_report.label_counts,
    )  # fmt: skip
    return RealParts(train, heldout, test, report)
