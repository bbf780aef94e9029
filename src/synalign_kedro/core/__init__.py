"""The SynAlign method as a plain library: no Kedro imports, numpy/torch/pandas in and out.

Modules (each cites the section / equation of Ren et al. 2025 it implements):

- ``device``      torch device resolution ("auto" = CUDA when available)
- ``models``      embedded model files from pinned pip packages (sha256-verified)
- ``llm_server``  lifecycle of the embedded llama.cpp OpenAI-compatible server
- ``embedding``   sentence-transformers embeddings with a content-addressed cache
- ``ingestion``   reading, validating, normalising, deduplicating and splitting real data
"""
