"""Shared fixtures. Tests run offline on the CPU; the embedder and the test LLM come from pip packages."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RAW = PROJECT_ROOT / "data" / "01_raw"
TEST_LLM = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="module")
def single_thread():
    """One BLAS/OpenMP/torch thread for a module: on a shared 2-core machine, oversubscribed OpenMP spin-waits
    make many small operations (t-SNE, one GP round) up to 10x slower than single-threaded.
    Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def sst2_train() -> pd.DataFrame:
    """The shipped SST-2 training sample (2,000 rows, columns text,label)."""
    return pd.read_csv(RAW / "sst2" / "train.csv")


@pytest.fixture(scope="session")
def ag_news_train() -> pd.DataFrame:
    return pd.read_csv(RAW / "ag_news" / "train.csv")


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embedding_cache")


@pytest.fixture(scope="session")
def sst2_embeddings(sst2_train, embedding_cache):
    """Real all-MiniLM-L6-v2 embeddings of the first 300 SST-2 rows (unit norm, 384-d)."""
    from synalign_kedro.core.embedding import embed_texts

    return embed_texts(sst2_train["text"].head(300).tolist(), device="cpu", cache_dir=embedding_cache)


@pytest.fixture(scope="session")
def test_llm_endpoint():
    """A real llama.cpp server with the embedded test LLM (SmolLM2-135M), stopped after the session."""
    from synalign_kedro.core import llm_server

    endpoint = llm_server.embedded_endpoint(TEST_LLM, n_ctx=2048)
    yield endpoint
    llm_server.stop_all()
