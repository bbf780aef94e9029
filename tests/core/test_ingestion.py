"""Ingestion: every bad-input case gets an error naming the file and the problem; cleaning counts are exact."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from synalign_kedro.core.ingestion import IngestionError, ingest, normalise_text, read_table


def write_csv(path, rows, header="text,label"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def good_train(tmp_path):
    return write_csv(tmp_path / "train.csv", ["good film,pos", "bad film,neg", "great acting,pos", "dull plot,neg"])


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
    with pytest.raises(IngestionError, match=r"latin1\.csv: not valid UTF-8: byte b'\\xe9' at offset 21 \(line 3\)"):
        read_table(path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(IngestionError, match=r"data\.xlsx: cannot tell the format"):
        read_table(path)


def test_missing_column_lists_available_columns(tmp_path):
    path = write_csv(tmp_path / "cols.csv", ["a,pos", "b,neg"], header="sentence,label")
    with pytest.raises(IngestionError, match=re.escape("missing column(s) ['text']; the file has columns ['sentence', 'label']")):
        ingest(path, None)


def test_single_class(tmp_path):
    path = write_csv(tmp_path / "one.csv", ["a,pos", "b,pos", "c,pos"])
    with pytest.raises(IngestionError, match=r"one\.csv: column 'label' has a single class \['pos'\]"):
        ingest(path, None)


def test_missing_labels_name_the_rows(tmp_path):
    path = write_csv(tmp_path / "holes.csv", ["a,pos", "b,", "c,neg", "d,  ", "e,neg"])
    with pytest.raises(IngestionError, match=r"holes\.csv: column 'label' has no label on 2 row\(s\): data rows 2, 4"):
        ingest(path, None)


def test_unknown_test_label(tmp_path, good_train):
    test = write_csv(tmp_path / "test.csv", ["fine,pos", "weird,meh"])
    with pytest.raises(IngestionError, match=r"test\.csv: column 'label' has label\(s\) \['meh'\] that never occur"):
        ingest(good_train, test)


def test_cleaning_counts_and_leakage(tmp_path):
    train = write_csv(
        tmp_path / "train.csv",
        ['"  good   film ",pos', "good film,pos", '"",neg', "bad film,neg", "great acting,pos", "dull plot,neg"],
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
