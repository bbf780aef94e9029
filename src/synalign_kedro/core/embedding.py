"""Sentence embeddings (SynAlign sec. 3.1: texts are mapped to E_ori / E_gen with Sentence-BERT).

Embeddings are cached on disk under a content hash of (model, normalisation, texts), so a re-run with
unchanged texts computes nothing. The cache is one ``.npy`` per call: written to a temporary name and
renamed, so a killed run never leaves a truncated cache entry.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .device import resolve_device
from .models import resolve_embedder

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_CACHE_DIR = Path("data/04_feature/embedding_cache")


class EmbeddingSettings(BaseModel):
    """The ``embedding`` parameter block: the one sentence embedder of every pipeline (sec. 3.1)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_EMBEDDER, description="embedded key, sentence-transformers name or folder")
    batch_size: int = Field(64, ge=1)
    device: str = Field("auto", description="auto = cuda when torch sees one, else cpu")
    cache_dir: str | None = Field(DEFAULT_CACHE_DIR.as_posix(), description="null = no embedding cache")


def embedding_key(texts: Sequence[str], model: str, normalize: bool = True) -> str:
    """sha256 over the model name, the normalisation flag and every text (length-prefixed, so that
    ``["ab", "c"]`` and ``["a", "bc"]`` differ)."""
    digest = hashlib.sha256()
    digest.update(f"model={model}\nnormalize={normalize}\n".encode())
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


@lru_cache(maxsize=4)
def load_embedder(model: str = DEFAULT_EMBEDDER, device: str = "auto"):
    """Load (once per process) a SentenceTransformer for ``model`` on ``device``."""
    from sentence_transformers import SentenceTransformer

    torch_device = resolve_device(device)
    source = resolve_embedder(model)
    logger.info("Loading embedder %s from %s on %s", model, source, torch_device)
    return SentenceTransformer(source, device=str(torch_device))


def embed_texts(
    texts: Sequence[str],
    model: str = DEFAULT_EMBEDDER,
    batch_size: int = 64,
    device: str = "auto",
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    normalize: bool = True,
    show_progress: bool | None = None,
) -> np.ndarray:
    """Embed ``texts`` into a float32 array of shape (len(texts), dim), unit-norm rows when ``normalize``.

    ``cache_dir=None`` disables the cache. ``show_progress=None`` shows a progress bar for more than
    1,000 texts.
    """
    texts = [str(t) for t in texts]
    if not texts:
        encoder = load_embedder(model, device)
        return np.zeros((0, encoder.get_embedding_dimension()), dtype=np.float32)
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"{embedding_key(texts, model, normalize)}.npy"
        if cache_path.is_file():
            cached = np.load(cache_path)
            if cached.shape[0] == len(texts):
                logger.info("Embeddings of %d texts found in cache %s", len(texts), cache_path.name)
                return cached
    encoder = load_embedder(model, device)
    progress = len(texts) > 1000 if show_progress is None else show_progress
    vectors = encoder.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=normalize,
        show_progress_bar=progress,
    ).astype(np.float32, copy=False)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_path.with_name(cache_path.stem + f".{os.getpid()}.partial.npy")
        np.save(partial, vectors)
        os.replace(partial, cache_path)
    return vectors


def embed_with_settings(texts: Sequence[str], settings: EmbeddingSettings | dict) -> np.ndarray:
    """:func:`embed_texts` driven by the ``embedding`` parameter block (validated by
    :class:`EmbeddingSettings`); the one place nodes unpack it."""
    settings = EmbeddingSettings.model_validate(settings)
    return embed_texts(
        [str(t) for t in texts],
        model=settings.model,
        batch_size=settings.batch_size,
        device=settings.device,
        cache_dir=settings.cache_dir,
    )
