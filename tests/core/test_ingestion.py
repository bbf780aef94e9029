"""Ingestion: every bad-input case gets an error naming the file and the problem; cleaning counts are exact."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest

from synalign_kedro.core.ingestion import IngestionError, ingest, ingest_parts, normalise_text, read_table


def write_csv(path, rows, header="text,label"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def good_train(tmp_path):
    return write_csv(
        tmp_path / "train.csv", ["good film,pos", "bad film,neg", "great acting,pos", "dull plot,neg"]
    )


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(IngestionError, match=r"nope\.csv: file not found"):
        read_table(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(IngestionError, match=r"empty\.csv: the file is empty"):
        read_table(tmp_path / "empty.csv")


def test_header_only_file(tmp_path):
    path = write_csv(tmp_path / "header.csv", [])
    with pytest.raises(IngestionError, match=r"header\.csv: the file has a header but no data rows"):
        read_table(path)


def test_non_utf8_bytes_give_line_and_offset(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nok,pos\ncaf\xe9 noir,neg\n".encode("latin-1"))
    with pytest.raises(
        IngestionError, match=r"latin1\.csv: not valid UTF-8: byte b'\\xe9' at offset 21 \(line 3\)"
    ):
        read_table(path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(IngestionError, match=r"data\.xlsx: cannot tell the format"):
        read_table(path)


def test_missing_column_lists_available_columns(tmp_path):
    path = write_csv(tmp_path / "cols.csv", ["a,pos", "b,neg"], header="sentence,label")
    with pytest.raises(
        IngestionError,
        match=re.escape("missing column(s) ['text']; the file has columns ['sentence', 'label']"),
    ):
        ingest(path, None)


def test_single_class(tmp_path):
    path = write_csv(tmp_path / "one.csv", ["a,pos", "b,pos", "c,pos"])
    with pytest.raises(IngestionError, match=r"one\.csv: column 'label' has a single class \['pos'\]"):
        ingest(path, None)


def test_missing_labels_name_the_rows(tmp_path):
    path = write_csv(tmp_path / "holes.csv", ["a,pos", "b,", "c,neg", "d,  ", "e,neg"])
    with pytest.raises(
        IngestionError, match=r"holes\.csv: column 'label' has no label on 2 row\(s\): data rows 2, 4"
    ):
        ingest(path, None)


def test_unknown_test_label(tmp_path, good_train):
    test = write_csv(tmp_path / "test.csv", ["fine,pos", "weird,meh"])
    with pytest.raises(
        IngestionError, match=r"test\.csv: column 'label' has label\(s\) \['meh'\] that never occur"
    ):
        ingest(good_train, test)


def test_cleaning_counts_and_leakage(tmp_path):
    train = write_csv(
        tmp_path / "train.csv",
        [
            '"  good   film ",pos',
            "good film,pos",
            '"",neg',
            "bad film,neg",
            "great acting,pos",
            "dull plot,neg",
        ],
    )
    test = write_csv(tmp_path / "test.csv", ["good film,pos", "lovely,pos", "awful,neg", "awful,neg"])
    real_train, real_test, report = ingest(train, test)
    assert real_train["text"].tolist() == ["good film", "bad film", "great acting", "dull plot"]
    assert report["train"]["empty_text_dropped"] == 1
    assert report["train"]["duplicates_dropped"] == 1
    assert report["test"]["duplicates_dropped"] == 1
    assert report["test"]["overlap_with_train_dropped"] == 1
    assert real_test["text"].tolist() == ["lovely", "awful"]
    assert set(real_train.columns) == {"row_id", "text", "label"}
    assert real_train["row_id"].is_unique and real_test["row_id"].is_unique
    json.dumps(report)  # the report is JSON-serialisable


def test_row_ids_are_stable_under_reordering(tmp_path):
    rows = ["good film,pos", "bad film,neg", "great acting,pos", "dull plot,neg"]
    a, _, _ = ingest(write_csv(tmp_path / "a.csv", rows), write_csv(tmp_path / "t.csv", ["x,pos", "y,neg"]))
    b, _, _ = ingest(write_csv(tmp_path / "b.csv", rows[::-1]), tmp_path / "t.csv")
    assert dict(zip(a["text"], a["row_id"], strict=True)) == dict(zip(b["text"], b["row_id"], strict=True))


def test_stratified_split_when_no_test_file(tmp_path):
    rows = [f"positive text {i},pos" for i in range(40)] + [f"negative text {i},neg" for i in range(10)]
    train, test, report = ingest(write_csv(tmp_path / "t.csv", rows), None, test_size=0.2, seed=0)
    assert len(test) == 10 and len(train) == 40
    assert test["label"].value_counts().to_dict() == {"pos": 8, "neg": 2}
    assert not set(train["text"]) & set(test["text"])
    assert report["split"].startswith("stratified")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_parquet_and_jsonl_with_custom_columns(tmp_path, fmt):
    frame = pd.DataFrame({"review": ["good", "bad", "fine", "poor"], "sentiment": ["p", "n", "p", "n"]})
    path = tmp_path / f"data.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    train, test, _ = ingest(path, None, text_column="review", label_column="sentiment", test_size=0.5, seed=1)
    assert sorted(train["text"].tolist() + test["text"].tolist()) == ["bad", "fine", "good", "poor"]


def test_normalise_text():
    assert normalise_text("  a\u00a0 b\n\tc  ") == "a b c"
    assert normalise_text("cafe\u0301") == "caf\u00e9"


def test_shipped_samples_ingest(project_root):
    for name in ("sst2", "ag_news", "amazon_category"):
        raw = project_root / "data" / "01_raw" / name
        train, test, report = ingest(raw / "train.csv", raw / "test.csv")
        assert len(train) > 1000 and len(test) > 500, name
        assert not set(train["text"]) & set(test["text"])
        assert report["train"]["rows_read"] == 2000


# --- issue 11: every bad input gets a message naming the file, what is wrong and what to do -------------------

TWO_CLASSES = [f"good text {i},pos" for i in range(10)] + [f"bad text {i},neg" for i in range(10)]


def csv_bytes(rows, header="text,label"):
    return (header + "\n" + "\n".join(rows) + "\n").encode("utf-8")


def test_too_small_stratified_split_names_the_file_and_the_fix(tmp_path):
    rows = [f"a{i},a" for i in range(4)] + [f"b{i},b" for i in range(3)] + [f"c{i},c" for i in range(3)]
    message = (
        "small.csv: a stratified split with test_size=0.2 of 10 rows (after cleaning) gives 2 test and 8 train rows "
        "for 3 classes ['a', 'b', 'c']; every class needs at least one row on each side: set test_size to at least "
        "0.3 in the dataset profile, add rows, or give a test_path"
    )
    with pytest.raises(IngestionError, match=re.escape(message)):
        ingest(write_csv(tmp_path / "small.csv", rows), None)
    _, test, _ = ingest(tmp_path / "small.csv", None, test_size=0.3)  # the advised fix works
    assert sorted(test["label"]) == ["a", "b", "c"]


def test_malformed_jsonl_line_is_reported_by_line_number(tmp_path):
    lines = [json.dumps({"text": f"text {i}", "label": "p" if i % 2 else "n"}) for i in range(10)]
    lines[6] = '{"text": "broken, "label": "p"}'
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(
        IngestionError,
        match=re.escape(
            "bad.jsonl: line 7 is not valid JSON (Expecting ',' delimiter at column 20); JSON Lines needs one complete JSON object per line: fix or remove that line"
        ),
    ):
        read_table(path)
    path.write_text(lines[0] + "\n" + '["a list", "n"]\n', encoding="utf-8")
    with pytest.raises(IngestionError, match=r"bad\.jsonl: line 2 holds a JSON list, not an object"):
        read_table(path)


def test_json_array_file_is_read(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(
        json.dumps([{"text": "good", "label": "p"}, {"text": "bad", "label": "n"}]), encoding="utf-8"
    )
    assert read_table(path).to_dict("list") == {"text": ["good", "bad"], "label": ["p", "n"]}


@pytest.mark.parametrize(
    "name", ["train.csv.gz", "train.csv.bz2", "train.csv.xz", "train.csv.zip", "train.csv"]
)
def test_compressed_files_are_read(tmp_path, name):
    import bz2
    import gzip
    import lzma
    import zipfile

    data = csv_bytes(TWO_CLASSES)
    path = tmp_path / name
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("inner/train.csv", data)
    else:
        compress = {".bz2": bz2.compress, ".xz": lzma.compress}.get(path.suffix, gzip.compress)
        path.write_bytes(compress(data))  # plain train.csv: gzip bytes under a .csv name
    warnings: list[str] = []
    frame = read_table(path, warnings=warnings)
    assert frame.to_dict("list") == pd.read_csv(io.BytesIO(data)).to_dict("list")
    expected = (
        [f"{path}: gzip-compressed although named '.csv': read after decompressing"]
        if name == "train.csv"
        else []
    )
    assert warnings == expected


def test_compressed_files_that_cannot_be_read(tmp_path):
    import gzip
    import zipfile

    with zipfile.ZipFile(tmp_path / "two.csv.zip", "w") as archive:
        archive.writestr("train.csv", csv_bytes(TWO_CLASSES))
        archive.writestr("test.csv", csv_bytes(TWO_CLASSES))
    with pytest.raises(
        IngestionError,
        match=re.escape(
            "two.csv.zip: zip archive with 2 files ['train.csv', 'test.csv']; expected exactly one data file"
        ),
    ):
        read_table(tmp_path / "two.csv.zip")
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(csv_bytes(TWO_CLASSES))[:40])
    with pytest.raises(
        IngestionError,
        match=r"cut\.csv\.gz: starts like a gzip-compressed file but cannot be decompressed \(.*\); the file may be truncated",
    ):
        read_table(tmp_path / "cut.csv.gz")
    (tmp_path / "z.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd" + bytes(20))
    with pytest.raises(
        IngestionError,
        match=re.escape("z.csv.zst: zstd-compressed: decompress it first (`zstd -d z.csv.zst`)"),
    ):
        read_table(tmp_path / "z.csv.zst")


@pytest.mark.parametrize(
    ("delimiter", "name", "hint"),
    [
        ("\t", "tab", "rename it to .tsv or set `format: tsv`"),
        (";", "semicolon", "re-save it comma-separated"),
    ],
)
def test_tsv_saved_as_csv_is_read_with_its_delimiter(tmp_path, delimiter, name, hint):
    rows = [f"text, with comma {i}{delimiter}{'pos' if i % 2 else 'neg'}" for i in range(20)]
    path = tmp_path / "tabs.csv"
    path.write_text(f"text{delimiter}label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    train, test, report = ingest(path, None)
    assert len(train) + len(test) == 20 and set(train["label"]) == {"pos", "neg"}
    assert report["warnings"] == [
        f"{path}: the header has no comma but 2 {name}-separated columns: read as {name}-separated ({hint} to silence this warning)"
    ]


def test_unquoted_delimiter_names_the_line(tmp_path):
    path = write_csv(tmp_path / "fields.csv", TWO_CLASSES[:5] + ["one, two,pos"] + TWO_CLASSES[5:])
    with pytest.raises(
        IngestionError,
        match=re.escape(
            'fields.csv: line 7 has 3 comma-separated fields, the header has 2: quote texts that contain a comma ("like, this") or fix that line'
        ),
    ):
        read_table(path)


def test_duplicate_text_column_is_refused_and_other_duplicates_warned(tmp_path):
    path = write_csv(
        tmp_path / "dup.csv", [f"id {i},{row}" for i, row in enumerate(TWO_CLASSES)], header="text,text,label"
    )
    with pytest.raises(
        IngestionError,
        match=re.escape(
            "dup.csv: column 'text' occurs in header columns 1, 2, so it is ambiguous which one holds the texts: rename or drop the extra column"
        ),
    ):
        ingest(path, None)
    path = write_csv(
        tmp_path / "note.csv", [f"{row},a,b" for row in TWO_CLASSES], header="text,label,note,note"
    )
    _, _, report = ingest(path, None)
    assert report["warnings"] == [
        f"{path}: column 'note' occurs in header columns 3, 4; it is not used (only the first is read)"
    ]
    path = tmp_path / "dup.jsonl"
    path.write_text('{"text": "a", "label": "p", "text": "b"}\n', encoding="utf-8")
    with pytest.raises(
        IngestionError,
        match=re.escape(
            "dup.jsonl: column 'text' occurs 2 times in the object on line 1, so it is ambiguous"
        ),
    ):
        ingest(path, None)


def test_numeric_text_column_is_refused(tmp_path):
    frame = pd.DataFrame(
        {
            "id": range(20),
            "review": [r.split(",")[0] for r in TWO_CLASSES],
            "label": [r.split(",")[1] for r in TWO_CLASSES],
        }
    )
    frame.to_parquet(tmp_path / "ids.parquet")
    with pytest.raises(
        IngestionError,
        match=re.escape(
            "ids.parquet: column 'id' holds int64 values ([0, 1, 2]), not text; point `text_column` in the dataset profile at the column that holds the texts (columns that hold text: ['review'])"
        ),
    ):
        ingest(tmp_path / "ids.parquet", None, text_column="id")
    path = write_csv(tmp_path / "mostly.csv", [f"{i},pos" for i in range(12)] + [f"word {i},neg" for i in range(8)])
    _, _, report = ingest(path, None)
    assert report["warnings"] == [f"{path}: 12 of 20 values of column 'text' are numbers; check that it is the text column"]
    path = write_csv(tmp_path / "nums.csv", [f"{3 * i}.5,{'pos' if i % 2 else 'neg'}" for i in range(20)])
    with pytest.raises(
        IngestionError,
        match=re.escape(
            "nums.csv: every value of column 'text' is a number (e.g. ['0.5', '3.5', '6.5']), not text"
        ),
    ):
        ingest(path, None)


def test_swapped_text_and_label_columns_are_refused(tmp_path):
    path = write_csv(
        tmp_path / "swap.csv", [f"sentence number {i},{'pos' if i % 2 else 'neg'}" for i in range(60)]
    )
    with pytest.raises(
        IngestionError,
        match=re.escape(
            "swap.csv: column 'text' has 60 distinct labels for 60 rows: it holds free text, not class labels; check `label_column`"
        ),
    ):
        ingest(path, None, text_column="label", label_column="text")


def test_class_with_one_example_and_no_test_rows_is_refused(tmp_path):
    train = write_csv(tmp_path / "train.csv", TWO_CLASSES + ["a rare thing,rare"])
    test = write_csv(tmp_path / "test.csv", ["new good,pos", "new bad,neg"])
    message = (
        f"{train} and {test}: 1 class(es) with too few rows: 'rare': 1 train, 0 test. Every class needs at least "
        "1 train row(s) (demonstrations) and 1 test row(s) (per-class evaluation): add rows of these classes to "
    )
    with pytest.raises(IngestionError, match=re.escape(message)):
        ingest(train, test)
    _, _, report = ingest(train, test, min_test_rows_per_class=0)  # allowed on request, and said
    assert report["warnings"] == [
        f"{train} and {test}: class(es) ['rare'] have a single train row: every demonstration of them is that text",
        f"{train} and {test}: class(es) ['rare'] have no test rows: their accuracy is not measured",
    ]


def test_other_encodings_and_formats(tmp_path):
    data = csv_bytes(TWO_CLASSES)
    (tmp_path / "utf16.csv").write_bytes(data.decode().encode("utf-16"))
    with pytest.raises(
        IngestionError,
        match=re.escape(
            "utf16.csv: UTF-16 encoded (byte order mark b'\\xff\\xfe'); re-save the file as UTF-8"
        ),
    ):
        read_table(tmp_path / "utf16.csv")
    pd.read_csv(io.BytesIO(data)).to_parquet(tmp_path / "parquet.csv")
    warnings: list[str] = []
    assert len(read_table(tmp_path / "parquet.csv", warnings=warnings)) == 20
    assert warnings == [
        f"{tmp_path / 'parquet.csv'}: a Parquet file (starts with PAR1) although the format is csv: read as Parquet"
    ]
    (tmp_path / "csv.parquet").write_bytes(data)
    with pytest.raises(
        IngestionError,
        match=re.escape(
            "csv.parquet: could not be read as parquet (it starts with b'text,label\\ngood ', not PAR1: is it Parquet?)"
        ),
    ):
        read_table(tmp_path / "csv.parquet")


# --- issue 13: three disjoint real parts (train: what the method sees; heldout: never fitted on; test) -------


def test_heldout_part_is_stratified_and_disjoint_from_train(tmp_path):
    rows = [f"positive text {i},pos" for i in range(40)] + [f"negative text {i},neg" for i in range(10)]
    train_file = write_csv(tmp_path / "train.csv", rows)
    test_file = write_csv(tmp_path / "test.csv", ["new good,pos", "new bad,neg"])
    train, heldout, test, report = ingest_parts(train_file, test_file, heldout_share=0.2, seed=0)
    assert heldout["label"].value_counts().to_dict() == {"pos": 8, "neg": 2}
    assert train["label"].value_counts().to_dict() == {"pos": 32, "neg": 8}
    assert list(heldout.columns) == ["row_id", "text", "label"] and heldout["row_id"].str.startswith("heldout-").all()
    assert not set(heldout["row_id"]) & set(train["row_id"])
    assert not set(heldout["text"]) & set(train["text"])
    assert set(heldout["text"]) | set(train["text"]) == {row.rsplit(",", 1)[0] for row in rows}
    assert report["heldout_share"] == 0.2
    assert report["heldout"]["rows_kept"] == 10 and report["heldout"]["label_counts"] == {"neg": 2, "pos": 8}
    assert report["train"]["rows_kept"] == 40 and report["train"]["label_counts"] == {"neg": 8, "pos": 32}
    json.dumps(report)
    again = ingest_parts(train_file, test_file, heldout_share=0.2, seed=0)
    assert again.heldout["row_id"].tolist() == heldout["row_id"].tolist()  # seeded
    assert ingest_parts(train_file, test_file, heldout_share=0.2, seed=1).heldout["row_id"].tolist() != heldout[
        "row_id"
    ].tolist()


def test_three_parts_are_disjoint_when_the_test_split_is_made_too(tmp_path):
    rows = [f"positive text {i},pos" for i in range(40)] + [f"negative text {i},neg" for i in range(20)]
    train, heldout, test, report = ingest_parts(write_csv(tmp_path / "t.csv", rows), None, test_size=0.2, seed=0)
    assert len(test) == 12 and len(heldout) == 9 and len(train) == 39
    assert heldout["label"].value_counts().to_dict() == {"pos": 6, "neg": 3}  # round(20 % of the 32 / 16 left)
    texts = [set(part["text"]) for part in (train, heldout, test)]
    assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]
    assert report["heldout"]["rows_kept"] == 9 and report["test"]["rows_kept"] == 12


def test_each_class_keeps_a_train_row_and_gives_a_heldout_row(tmp_path):
    rows = TWO_CLASSES + ["rare one,rare", "rare two,rare"]
    test = write_csv(tmp_path / "test.csv", ["new good,pos", "new bad,neg", "new rare,rare"])
    train, heldout, _, _ = ingest_parts(write_csv(tmp_path / "train.csv", rows), test, heldout_share=0.05)
    assert heldout["label"].value_counts().to_dict() == {"pos": 1, "neg": 1, "rare": 1}  # at least 1 each
    assert train["label"].value_counts().to_dict() == {"pos": 9, "neg": 9, "rare": 1}
    _, heldout, _, _ = ingest_parts(tmp_path / "train.csv", test, heldout_share=0.9)
    assert heldout["label"].value_counts().to_dict() == {"pos": 9, "neg": 9, "rare": 1}  # at least 1 kept


def test_a_class_too_small_to_hold_out_is_refused_with_its_counts(tmp_path):
    train = write_csv(tmp_path / "train.csv", TWO_CLASSES + ["a rare thing,rare"])
    test = write_csv(tmp_path / "test.csv", ["new good,pos", "new bad,neg", "new rare,rare"])
    message = (
        f"{train}: cannot hold out heldout_share=0.2 of each class: 1 class(es) with too few train rows: 'rare': 1 "
        "train row(s). Every class needs at least 2 (1 to train on, 1 held out for the distribution metrics): add "
        "rows of these classes, remove them, or set heldout_share: 0 in the dataset profile"
    )
    with pytest.raises(IngestionError, match=re.escape(message)):
        ingest_parts(train, test, heldout_share=0.2)
    two_class_test = write_csv(tmp_path / "test2.csv", ["new good,pos", "new bad,neg"])
    with pytest.raises(IngestionError, match=r"'neg': 10 train row\(s\); 'pos': 10 .*at least 11 \(10 to train on"):
        ingest_parts(write_csv(tmp_path / "t2.csv", TWO_CLASSES), two_class_test, min_train_rows_per_class=10)
    # nothing held out: the class is accepted (with the single-row warning), and ingest() never holds out
    train_part, heldout, _, report = ingest_parts(train, test, heldout_share=0)
    assert heldout.empty and list(heldout.columns) == ["row_id", "text", "label"] and len(train_part) == 21
    assert report["heldout"]["rows_kept"] == 0
    assert len(ingest(train, test)[0]) == 21
