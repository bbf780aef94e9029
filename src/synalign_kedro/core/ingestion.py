"""Reading, validating, normalising, deduplicating and splitting the real labelled data (D_ori, sec. 3.1).

Every check raises :class:`IngestionError` with a message that names the file, the column and the rows
concerned, before anything is written, so a failed ingestion leaves earlier outputs untouched.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_WHITESPACE = re.compile(r"\s+")
MAX_LISTED_ROWS = 20


class IngestionError(ValueError):
    """Bad real data: the message says which file, column and rows, and what was expected."""


def _format_rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:MAX_LISTED_ROWS])
    more = f" and {len(rows) - MAX_LISTED_ROWS} more" if len(rows) > MAX_LISTED_ROWS else ""
    return shown + more


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt and fmt != "auto":
        if fmt not in set(SUPPORTED_FORMATS.values()):
            raise IngestionError(f"{path}: unknown format {fmt!r}; expected one of csv, tsv, parquet, jsonl")
        return fmt
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_FORMATS:
        raise IngestionError(
            f"{path}: cannot tell the format from the extension {suffix!r}; use .csv, .tsv, .parquet or .jsonl, "
            "or set `format:` in the dataset profile"
        )
    return SUPPORTED_FORMATS[suffix]


def _check_utf8(path: Path) -> None:
    """Fail with the line and byte offset of the first byte sequence that is not UTF-8."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise IngestionError(
            f"{path}: not valid UTF-8: byte {data[error.start:error.start + 1]!r} at offset {error.start} "
            f"(line {line}); re-save the file as UTF-8"
        ) from None


def read_table(path: str | Path, fmt: str | None = "auto") -> pd.DataFrame:
    """Read a CSV / TSV / Parquet / JSONL file into a DataFrame, with clear errors for a missing file,
    bytes that are not UTF-8, an empty file or a file the parser cannot read."""
    path = Path(path)
    if not path.exists():
        raise IngestionError(f"{path}: file not found (working directory: {Path.cwd()})")
    if path.is_dir():
        raise IngestionError(f"{path}: is a directory, expected a file")
    fmt = detect_format(path, fmt)
    if path.stat().st_size == 0:
        raise IngestionError(f"{path}: the file is empty (0 bytes)")
    try:
        if fmt in ("csv", "tsv", "jsonl"):
            _check_utf8(path)
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        elif fmt == "tsv":
            frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        else:
            frame = pd.read_parquet(path)
    except IngestionError:
        raise
    except pd.errors.EmptyDataError:
        raise IngestionError(f"{path}: the file has no header and no rows") from None
    except Exception as error:  # the parser's own message, with the file named
        raise IngestionError(f"{path}: could not be read as {fmt}: {error}") from error
    if frame.empty:
        raise IngestionError(f"{path}: the file has a header but no data rows")
    return frame


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


def validate_columns(frame: pd.DataFrame, path: Path, text_column: str, label_column: str) -> pd.DataFrame:
    """Check the columns and labels; return a frame with columns ``text`` and ``label`` (str)."""
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        raise IngestionError(
            f"{path}: missing column(s) {missing}; the file has columns {list(map(str, frame.columns))}. "
            "Set `text_column` / `label_column` in the dataset profile"
        )
    labels = frame[label_column]
    label_text = labels.astype("string").str.strip()
    missing_label = labels.isna().to_numpy() | (label_text.fillna("") == "").to_numpy()
    if missing_label.any():
        rows = [int(i) + 1 for i in missing_label.nonzero()[0]]
        raise IngestionError(
            f"{path}: column {label_column!r} has no label on {len(rows)} row(s): data rows {_format_rows(rows)} "
            "(1-based, header not counted); every row needs a label"
        )
    texts = frame[text_column].astype("string").fillna("")
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
    report.label_counts = {str(k): int(v) for k, v in result["label"].value_counts().sort_index().items()}
    return result, report


def ingest(
    train_path: str | Path,
    test_path: str | Path | None,
    text_column: str = "text",
    label_column: str = "label",
    fmt: str | None = "auto",
    test_size: float = 0.2,
    seed: int = 42,
    min_rows_per_class: int = 2,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Read, validate and clean the real data; return ``(real_train, real_test, report)``.

    Test rows whose text also occurs in train are dropped (leakage). With no ``test_path`` a stratified
    split of the train file (``test_size``, ``seed``) is made after cleaning.
    """
    train_path = Path(train_path)
    train_raw = validate_columns(read_table(train_path, fmt), train_path, text_column, label_column)
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
        test_raw = validate_columns(read_table(test_path, fmt), test_path, text_column, label_column)
        test, test_report = clean_split(test_raw, "test")
        overlap = test["text"].isin(set(train["text"]))
        test_report.overlap_with_train_dropped = int(overlap.sum())
        test = test.loc[~overlap].reset_index(drop=True)
        unknown = sorted(set(test["label"]) - set(classes))
        if unknown:
            raise IngestionError(
                f"{test_path}: column {label_column!r} has label(s) {unknown} that never occur in {train_path}"
            )
        test_report.rows_kept = len(test)
        test_report.label_counts = {str(k): int(v) for k, v in test["label"].value_counts().sort_index().items()}
        report["split"] = "given"
    else:
        small = {k: v for k, v in train_report.label_counts.items() if v < min_rows_per_class}
        if small:
            raise IngestionError(
                f"{train_path}: cannot make a stratified test split: label(s) with fewer than "
                f"{min_rows_per_class} rows: {small}; give a test file or more rows"
            )
        train_part, test_part = train_test_split(train, test_size=test_size, random_state=seed, stratify=train["label"])
        test = test_part.reset_index(drop=True)
        test["row_id"] = [row_id("test", t) for t in test["text"]]
        train = train_part.reset_index(drop=True)
        test_report = SplitReport(rows_read=0, rows_kept=len(test))
        test_report.label_counts = {str(k): int(v) for k, v in test["label"].value_counts().sort_index().items()}
        train_report.rows_kept = len(train)
        train_report.label_counts = {str(k): int(v) for k, v in train["label"].value_counts().sort_index().items()}
        report["split"] = f"stratified {test_size:.0%} of train (seed {seed})"

    if test.empty:
        raise IngestionError(f"{test_path or train_path}: no test rows left after cleaning")
    report["train"] = train_report.__dict__
    report["test"] = test_report.__dict__
    for name, part in (("train", train_report), ("test", test_report)):
        logger.info(
            "%s: read %d, dropped %d empty, %d duplicate, %d overlapping with train; kept %d",
            name, part.rows_read, part.empty_text_dropped, part.duplicates_dropped,
            part.overlap_with_train_dropped, part.rows_kept,
        )  # fmt: skip
    return train, test, report
