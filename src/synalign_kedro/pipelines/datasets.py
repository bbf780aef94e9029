"""The project's reporting datasets (thin: hashing and file I/O only).

- :class:`PngDataset`: a PNG figure as bytes, saved atomically and loaded back as bytes. Plot nodes render
  their figure to PNG bytes (``core.plots.figure_png``), so the run report can take every figure as a node
  input: Kedro then orders the report after the plots, under any runner. (kedro-datasets'
  ``matplotlib.MatplotlibDataset`` saves figures but cannot load them back.)
- :class:`FileDigestDataset`: read-only, the sha256 of a (versioned) file written by another dataset.

Why the digest dataset: the manifest must hold the hash of the exact bytes Kedro wrote for each export dataset, but Kedro
writes a node's outputs after the node returns and a loaded DataFrame does not give back its file. A
catalog entry of this type points at the same ``filepath`` as the export dataset (same ``versioned``
flag); a later node takes it as input, so it is loaded after the export was saved. With versioning it
resolves to the version saved in this run (the catalog's save version) when that exists, else to the
latest version on disk.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractDataset, AbstractVersionedDataset, DatasetError, Version

from synalign_kedro.core.models import sha256_of

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PngDataset(AbstractDataset[bytes, bytes]):
    """A PNG file on the local disk, as bytes: saved atomically (a temporary file beside it, then renamed),
    refused when the bytes are not a PNG."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self) -> bytes:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"{path} does not exist: run the node that draws this figure first")
        return path.read_bytes()

    def save(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray) or not bytes(data).startswith(PNG_SIGNATURE):
            raise DatasetError(
                f"{self._filepath}: expected PNG bytes (core.plots.figure_png), got {type(data).__name__}"
            )
        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(bytes(data))
        os.replace(partial, path)

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}



class FileDigestDataset(AbstractVersionedDataset[dict, dict]):
    """Loads ``{"path", "version", "sha256", "size_bytes"}`` of a local file; cannot be saved."""

    def __init__(
        self, filepath: str, version: Version | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self.metadata = metadata

    def _resolve_path(self) -> tuple[Path, str | None]:
        if not self._version:
            return Path(self._filepath), None
        # The save version of this run (set by the catalog for every versioned entry) names the file the
        # export dataset has just written; fall back to the load version (pinned or latest).
        if self._version.save:
            candidate = Path(self._get_versioned_path(self._version.save))
            if candidate.is_file():
                return candidate, self._version.save
        self._clear_version_cache()
        load_version = self.resolve_load_version()
        return Path(self._get_versioned_path(load_version)), load_version

    def load(self) -> dict:
        path, version = self._resolve_path()
        if not path.is_file():
            raise DatasetError(f"{path} does not exist: the export dataset that writes it has not run")
        return {
            "path": path.as_posix(),
            "version": version,
            "sha256": sha256_of(path),
            "size_bytes": path.stat().st_size,
        }

    def save(self, data: dict) -> None:
        raise DatasetError(
            f"{type(self).__name__} is read-only: it hashes {self._filepath}, written by another dataset"
        )

    def _exists(self) -> bool:
        try:
            return self._resolve_path()[0].is_file()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}
