"""Reading a table file for ingestion, whatever it turns out to be: CSV / TSV (delimiter sniffed), Parquet,
JSON Lines or a JSON array, plain or gzip / bz2 / xz / zip-compressed (detected from the bytes, not only the
name). Every problem raises :class:`IngestionError` naming the file, what is wrong and what to do."""


import bz2
import csv
import gzip
import io
import json
import logging
import lzma
import re
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import pandas as pd

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
