"""Project-specific Kedro datasets (thin wrappers; the logic lives in ``core``)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io.core import AbstractDataset, DatasetError

from synalign_kedro.atomic_writes import StagedFile


class NumpyDataset(AbstractDataset[np.ndarray, np.ndarray]):
    """A ``.npy`` array on the local disk, written atomically (temp sibling + rename, ``atomic_writes``)."""

    writes_atomically = True

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _load(self) -> np.ndarray:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"{path} does not exist; run the pipeline that produces it first")
        return np.load(path)

    def _save(self, data: np.ndarray) -> None:
        path = Path(self._filepath)
        with StagedFile(str(path)) as handle:
            np.save(handle, np.asarray(data))

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    load = _load
    save = _save
