"""Reading, validating, normalising, deduplicating and splitting the real labelled data (D_ori, sec. 3.1).

Every check that makes the data unusable raises :class:`IngestionError` with a message that names the file,
says what is wrong and what to do; nothing is returned (so the pipeline saves nothing) until every check has
passed. Problems that leave the data usable are logged as warnings and listed under ``warnings`` in the
ingestion report. docs/ingestion.md lists which inputs are refused and which are warned about.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import logging
import lzma
import math
import re
import unicodedata
import zipfile
import zlib
from collections import Counter
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
COMPRESSION_SUFFIXES = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zip": "zip",
    ".zst": "zstd",
}
# Magic numbers (gzip RFC 1952, zip APPNOTE 4.3.7, bzip2 header + block magic, xz, zstd RFC 8878 3.1.1).
_COMPRESSION_MAGIC = (
    (re.compile(rb"\A\x1f\x8b"), "gzip"),
    (re.compile(rb"\APK\x03\x04"), "zip"),
    (re.compile(rb"\ABZh[1-9]1AY&SY"), "bz2"),
    (re.compile(rb"\A\xfd7zXZ\x00"), "xz"),
    (re.compile(rb"\A\x28\xb5\x2f\xfd"), "zstd"),
)
_PARQUET_MAGIC = b"PAR1"
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
_DECLARED_DELIMITER = {"csv": ",", "tsv": "\t"}
_NUMBER = r"[+-]?(?:\d[\d,_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?"
_WHITESPACE = re.compile(r"\s+")
MAX_LISTED_ROWS = 20
# More distinct labels than this share of the rows (and more than MIN_CLASSES_FOR_TEXT_CHECK): the label column
# holds free text, usually text_column and label_column swapped.
MAX_CLASS_SHARE = 0.5
MIN_CLASSES_FOR_TEXT_CHECK = 20


class IngestionError(ValueError):
    """Bad real data: the message names the file, says what is wrong and what to do."""


def _format_rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:MAX_LISTED_ROWS])
    more = f" and {len(rows) - MAX_LISTED_ROWS} more" if len(rows) > MAX_LISTED_ROWS else ""
    return shown + more


def _warn(warnings: list[str], message: str) -> None:
    logger.warning(message)
    warnings.append(message)


def detect_format(path: Path, fmt: str | None = None) -> str:
    """The table format from ``fmt`` or the file name (a compression suffix such as ``.csv.gz`` is looked through)."""
    if fmt and fmt != "auto":
        if fmt not in set(SUPPORTED_FORMATS.values()):
            raise IngestionError(f"{path}: unknown format {fmt!r}; expected one of csv, tsv, parquet, jsonl")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix not in SUPPORTED_FORMATS:
        raise IngestionError(
            f"{path}: cannot tell the format from the extension {suffix!r}; use .csv, .tsv, .parquet or .jsonl "
            "(optionally compressed: .csv.gz, .jsonl.zip, ...), or set `format:` in the dataset profile"
        )
    return SUPPORTED_FORMATS[suffix]


def _sniff_compression(data: bytes) -> str | None:
    for magic, name in _COMPRESSION_MAGIC:
        if magic.match(data):
            return name
    return None


def _decompress(path: Path, data: bytes, compression: str) -> bytes:
    """Decompress a whole data file in memory with the standard library (the raw files are small: thousands of
    rows), so the UTF-8 check, the delimiter check and the JSON Lines line numbers see the real content."""
    if compression == "zstd":
        raise IngestionError(
            f"{path}: zstd-compressed: decompress it first (`zstd -d {path.name}`) and point the dataset profile "
            "at the decompressed file"
        )
    try:
        if compression == "gzip":
            return gzip.decompress(data)
        if compression == "bz2":
            return bz2.decompress(data)
        if compression == "xz":
            return lzma.decompress(data)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [
                m
                for m in archive.infolist()
                if not m.is_dir() and not m.filename.startswith(("__MACOSX/", "."))
            ]
            if len(members) != 1:
                names = [m.filename for m in members]
                raise IngestionError(
                    f"{path}: zip archive with {len(names)} files {names[:MAX_LISTED_ROWS]}; expected exactly one "
                    "data file: extract the one you want and point the dataset profile at it"
                )
            return archive.read(members[0])
    except IngestionError:
        raise
    except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, RuntimeError) as error:
        raise IngestionError(
            f"{path}: starts like a {compression}-compressed file but cannot be decompressed ({error}); the file "
            f"may be truncated: copy it again, or decompress it yourself and point the dataset profile at the result"
        ) from None


def _decode(path: Path, data: bytes, where: str) -> str:
    """UTF-8 text (a UTF-8 byte order mark is dropped); fail with the offset and line of the first bad byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise IngestionError(
            f"{path}: UTF-16 encoded (byte order mark {data[:2]!r}){where}; re-save the file as UTF-8 "
            "(e.g. `iconv -f UTF-16 -t UTF-8`)"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise IngestionError(
            f"{path}: not valid UTF-8: byte {data[error.start : error.start + 1]!r} at offset {error.start} "
            f"(line {line}){where}; re-save the file as UTF-8"
        ) from None


def _header(text: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader(io.StringIO(text), delimiter=delimiter))
    except (StopIteration, csv.Error):
        return []


def _choose_delimiter(path: Path, text: str, fmt: str, warnings: list[str]) -> str:
    """The declared delimiter, unless the header has a single column with it and several with another one
    (a TSV saved as .csv, a semicolon CSV from a spreadsheet): then that one, ``csv.Sniffer``'s guess first."""
    declared = _DECLARED_DELIMITER[fmt]
    sample = text[: 1 << 16]
    if len(_header(sample, declared)) > 1:
        return declared
    try:
        sniffed = [csv.Sniffer().sniff(sample, delimiters="".join(_DELIMITER_NAMES)).delimiter]
    except csv.Error:
        sniffed = []
    for candidate in sniffed + [d for d in _DELIMITER_NAMES if d not in sniffed and d != declared]:
        n_columns = len(_header(sample, candidate))
        if candidate != declared and n_columns > 1:
            hint = "rename it to .tsv or set `format: tsv`" if candidate == "\t" else "re-save it comma-separated"
            _warn(
                warnings,
                f"{path}: the header has no {_DELIMITER_NAMES[declared]} but {n_columns} "
                f"{_DELIMITER_NAMES[candidate]}-separated columns: read as {_DELIMITER_NAMES[candidate]}-separated "
                f"({hint} to silence this warning)",
            )
            return candidate
    return declared


def _read_delimited(path: Path, text: str, fmt: str, warnings: list[str]) -> pd.DataFrame:
    delimiter = _choose_delimiter(path, text, fmt, warnings)
    name = _DELIMITER_NAMES[delimiter]
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise IngestionError(f"{path}: the file has no header and no rows") from None
    except pd.errors.ParserError as error:
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        if fields:
            expected, line, seen = fields.groups()
            raise IngestionError(
                f"{path}: line {line} has {seen} {name}-separated fields, the header has {expected}: quote texts "
                f'that contain a {name} ("like, this") or fix that line'
            ) from None
        raise IngestionError(f"{path}: could not be read as {name}-separated text: {error}") from None
    header = _header(text, delimiter)
    positions: dict[str, list[int]] = {}
    for position, column in enumerate(header, start=1):
        positions.setdefault(column, []).append(position)
    frame.attrs["duplicate_columns"] = {
        column: "in header columns " + ", ".join(map(str, where))
        for column, where in positions.items()
        if len(where) > 1
    }
    return frame


def _read_json_records(path: Path, text: str) -> pd.DataFrame:
    """JSON Lines (one object per line), or a JSON array of objects (a .json file starting with ``[``).

    Parsed here line by line rather than with ``pd.read_json``, whose errors give a character position
    (``position 12415``) instead of the line to fix, and which keeps the last of two equal keys silently.
    """
    duplicates: dict[str, str] = {}
    location = {"where": ""}

    def object_with_duplicate_check(pairs: list[tuple[str, object]]) -> dict:
        seen = Counter(key for key, _ in pairs)
        for key, count in seen.items():
            if count > 1 and key not in duplicates:
                duplicates[key] = f"{count} times in the object {location['where']}"
        return dict(pairs)

    records: list[dict] = []
    if text.lstrip().startswith("["):
        location["where"] = "of the JSON array"
        try:
            items = json.loads(text, object_pairs_hook=object_with_duplicate_check)
        except json.JSONDecodeError as error:
            raise IngestionError(
                f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}; fix the file "
                "(a JSON array of objects, or JSON Lines: one object per line)"
            ) from None
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise IngestionError(
                    f"{path}: item {number} of the JSON array is a JSON {type(item).__name__}, not an object; "
                    'expected objects like {"text": ..., "label": ...}'
                )
            records.append(item)
    else:
        # split on "\n" only: str.splitlines would also split inside strings at U+2028 and similar characters
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            location["where"] = f"on line {number}"
            try:
                item = json.loads(line, object_pairs_hook=object_with_duplicate_check)
            except json.JSONDecodeError as error:
                raise IngestionError(
                    f"{path}: line {number} is not valid JSON ({error.msg} at column {error.colno}); JSON Lines "
                    "needs one complete JSON object per line: fix or remove that line"
                ) from None
            if not isinstance(item, dict):
                raise IngestionError(
                    f"{path}: line {number} holds a JSON {type(item).__name__}, not an object; JSON Lines needs one "
                    'object per line, like {"text": ..., "label": ...}'
                )
            records.append(item)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame.attrs["duplicate_columns"] = duplicates
    return frame


def read_table(path: str | Path, fmt: str | None = "auto", warnings: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV / TSV / Parquet / JSON Lines file, plain or gzip / bz2 / xz / zip compressed.

    Clear errors for a missing file, an unknown extension, bytes that are not UTF-8, an empty file, a
    malformed line (its line number); a TSV named .csv is read with the detected delimiter and warned about.
    ``frame.attrs["duplicate_columns"]`` names columns that occur more than once; warnings go to ``warnings``.
    """
    path = Path(path)
    warnings = [] if warnings is None else warnings
    if not path.exists():
        raise IngestionError(f"{path}: file not found (working directory: {Path.cwd()})")
    if path.is_dir():
        raise IngestionError(f"{path}: is a directory, expected a file")
    fmt = detect_format(path, fmt)
    if path.stat().st_size == 0:
        raise IngestionError(f"{path}: the file is empty (0 bytes)")
    data = path.read_bytes()
    compression = _sniff_compression(data)
    where = ""
    if compression:
        data = _decompress(path, data, compression)
        where = f" of the {compression}-decompressed content"
        if path.suffix.lower() not in COMPRESSION_SUFFIXES:
            _warn(
                warnings,
                f"{path}: {compression}-compressed although named {path.suffix!r}: read after decompressing",
            )
        else:
            logger.info("%s: %s-compressed, decompressed in memory", path, compression)
        if not data:
            raise IngestionError(f"{path}: the {compression}-decompressed content is empty (0 bytes)")
    if data.startswith(_PARQUET_MAGIC) and fmt != "parquet":
        _warn(
            warnings,
            f"{path}: a Parquet file (starts with PAR1) although the format is {fmt}: read as Parquet",
        )
        fmt = "parquet"
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as error:  # pyarrow's own message, with the file named and a hint
            hint = (
                ""
                if data.startswith(_PARQUET_MAGIC)
                else f" (it starts with {data[:16]!r}, not PAR1: is it Parquet?)"
            )
            raise IngestionError(f"{path}: could not be read as parquet{hint}: {error}") from None
        repeated = frame.columns[frame.columns.duplicated()].unique()
        frame.attrs["duplicate_columns"] = {
            str(c): f"{int((frame.columns == c).sum())} times" for c in repeated
        }
    else:
        text = _decode(path, data, where)
        if not text.strip():
            raise IngestionError(f"{path}: the file has no header and no rows (only whitespace)")
        if fmt == "jsonl":
            frame = _read_json_records(path, text)
        else:
            frame = _read_delimited(path, text, fmt, warnings)
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
    """Read, validate and clean the real data; return ``(real_train, real_test, report)``.

    Test rows whose text also occurs in train are dropped (leakage). With no ``test_path`` a stratified
    split of the train file (``test_size``, ``seed``) is made after cleaning. Every class must keep
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
        train_report.rows_kept = len(train)
        train_report.label_counts = _label_counts(train)
        report["split"] = f"stratified {test_size:.0%} of train (seed {seed})"
        where = f"{train_path} (stratified split, test_size={test_size}, seed {seed})"
        fix = "add rows of these classes, remove them, raise test_size, or give a test_path"

    _check_rows_per_class(
        where, classes, train, test, min_train_rows_per_class, min_test_rows_per_class, fix, warnings
    )
    report["train"] = train_report.__dict__
    report["test"] = test_report.__dict__
    report["warnings"] = warnings
    for name, part in (("train", train_report), ("test", test_report)):
        logger.info(
            "%s: read %d, dropped %d empty, %d duplicate, %d overlapping with train; kept %d",
            name, part.rows_read, part.empty_text_dropped, part.duplicates_dropped,
            part.overlap_with_train_dropped, part.rows_kept,
        )  # fmt: skip
    return train, test, report
