"""The SynAlign method as a plain library: no Kedro imports, numpy/torch/pandas in and out.

Modules (each cites the section / equation of Ren et al. 2025 it implements; docs/architecture.md has the map):

- ``variants``        the one registry of generation methods and synthetic variants, and their dataset names
- ``parameters``      every parameter block and its settings model (validated before the first node)
- ``device``          torch device resolution ("auto" = CUDA when available)
- ``models``          embedded model files from pinned pip packages (sha256-verified)
- ``ingestion``       reading, validating, normalising, deduplicating and splitting real data
- ``embedding``       sentence-transformers embeddings with a content-addressed cache (sec. 3.1)
- ``gp_kernel``, ``exploration``, ``demonstrations``   GP kernel, uncertainty tracker, demonstration
  batches (sec. 3.2, Algorithm 1)
- ``coverage``        convex-hull coverage of the real data (appendix A.2.3, figures 4-5)
- ``generation``      SynAlign's latent-attribute generation and the baselines (sec. 3.3, 4.1): a package
- ``llm_client``, ``llm_cache``, ``llm_server``, ``json_extract``   one OpenAI-compatible path to an LLM
- ``alignment``, ``aligned_variants``   MMD alignment weights (sec. 3.4, eq. 8-11), resampling, variants
- ``metrics``, ``classifier``, ``evaluation``   distances, downstream classifier, per-variant evaluation (sec. 4)
- ``privacy``, ``ab_testing``   privacy checks, A/B sets and the offline A/B estimate (sec. 4.6)
- ``plots``, ``report``   every figure; the self-contained HTML run report
- ``arrays``          shared input checks
"""
