"""Atomic dataset writes: every file a Kedro dataset saves is written beside its target, then renamed over it.

Why: kedro-datasets write in place (``fs.open(path, "wb")`` truncates the target first), so a run killed
while saving left a 0-byte ``real_train.parquet`` where a good one had been (issue 11).

How, without touching any catalog entry: :class:`AtomicWritesHook` (registered in ``settings.py``) gives each
output dataset of a node that stores on the local file system (kedro-datasets' pandas / json / text /
matplotlib datasets, versioned or not, and kedro-mlflow's artifact wrappers around them) an
:class:`AtomicLocalFileSystem`. Its write-mode ``open`` returns a file that writes to a hidden temp sibling
(``.<name>.<pid>-<token>.partial``) and, on a successful ``close`` (or ``with`` block), fsyncs it and
``os.replace``s it over the target: POSIX rename within one folder is atomic, so a reader, or a run killed at
any instant, sees the old complete file or the new complete file. A write that raises, or a handle dropped
without ``close``, deletes its temp file and leaves the target untouched.

The renames of one node's unversioned kedro-datasets outputs are held until the last of the node's outputs is
saved, then done together (microseconds apart); a save that fails, or a run killed while the node's outputs
are being written, leaves every one of them as it was. Versioned datasets write into a fresh version folder
and kedro-mlflow's wrappers read their file back right after saving, so their renames are not held.

Temp files of a killed run (or of a failed save) are removed by the next successful save of the same target. The datasets'
``_fs`` attribute is kedro-datasets' own (``AbstractVersionedDataset`` subclasses with an fsspec file
system); a file-backed output dataset without one is logged once as not atomic.

tests/test_atomic_writes.py kills ``kedro run`` with SIGKILL inside each of ingestion's saves.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileSystem
from kedro.framework.hooks import hook_impl
from kedro.io.core import AbstractVersionedDataset

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
_HELD_MODULES = ("kedro_datasets.", "synalign_kedro.")
# Temp files of this process that are being written or wait for their rename: every other temp sibling is a
# leftover (of a killed process, or of a failed save in this one) and may be deleted.
_LIVE_TEMPS: set[str] = set()
_LIVE_LOCK = threading.Lock()


def _track(temp: str, live: bool) -> None:
    with _LIVE_LOCK:
        if live:
            _LIVE_TEMPS.add(os.path.abspath(temp))
        else:
            _LIVE_TEMPS.discard(os.path.abspath(temp))


def partial_path(target: str | os.PathLike) -> Path:
    """A fresh temp sibling of ``target``: hidden, so no glob of versions or data files picks it up."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(target: str | os.PathLike) -> None:
    """Delete temp siblings of ``target`` left by a process that no longer runs (a run killed mid-save), or by
    a failed save of this process."""
    target = Path(target)
    for candidate in target.parent.glob(f".{target.name}.*{PARTIAL_SUFFIX}"):
        pid_text = candidate.name[len(target.name) + 2 :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        if int(pid_text) == os.getpid():
            with _LIVE_LOCK:
                stale = os.path.abspath(candidate) not in _LIVE_TEMPS
        else:
            stale = not _process_alive(int(pid_text))
        if stale:
            candidate.unlink(missing_ok=True)


def replace_atomically(temp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename a complete temp file over its target (atomic within one folder) and tidy up old temp files."""
    os.replace(temp, target)
    _track(str(temp), live=False)
    remove_stale_partials(target)


class StagedFile(io.BufferedWriter):
    """A binary file that becomes ``target`` when closed successfully, and nothing otherwise."""

    def __init__(self, target: str, on_complete=replace_atomically) -> None:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.temp = str(partial_path(target))
        self._failed = False
        self._on_complete = on_complete
        super().__init__(io.FileIO(self.temp, "xb"))
        _track(self.temp, live=True)

    def abandon(self) -> None:
        """Mark the content incomplete: ``close`` deletes the temp file instead of renaming it."""
        self._failed = True

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self._failed = True
        self.close()

    def __del__(self) -> None:  # dropped without close: the content may be incomplete, so never rename it
        try:
            if not self.closed:
                self._failed = True
                self.close()
        except Exception:  # noqa: S110 - nothing sensible to do during garbage collection
            pass

    def close(self) -> None:
        if self.closed:
            return
        complete = not self._failed
        try:
            if complete:
                self.flush()
                os.fsync(self.raw.fileno())
        except BaseException:
            complete = False
            raise
        finally:
            try:
                super().close()
            except BaseException:
                complete = False
                raise
            finally:
                try:
                    if complete:
                        self._on_complete(self.temp, self.target)
                except BaseException:
                    complete = False
                    raise
                finally:
                    if not complete:
                        Path(self.temp).unlink(missing_ok=True)
                        _track(self.temp, live=False)


class _StagedText(io.TextIOWrapper):
    """Text mode over a :class:`StagedFile`; an exception inside its ``with`` block abandons the file."""

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self.buffer.abandon()
        self.close()

    def __del__(self) -> None:
        try:
            if not self.closed:
                self.buffer.abandon()
                self.close()
        except Exception:  # noqa: S110 - nothing sensible to do during garbage collection
            pass


class AtomicLocalFileSystem(LocalFileSystem):
    """fsspec's local file system, except that opening a file for writing stages it (see the module doc).

    With :meth:`hold_renames`, completed files wait in :attr:`pending` until :meth:`commit` (or
    :meth:`discard`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holding = False
        self.pending: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def open(self, path, mode="rb", block_size=None, cache_options=None, compression=None, **kwargs):
        writes = "w" in mode or "x" in mode
        if not writes or "+" in mode or compression:
            return super().open(
                path,
                mode,
                block_size=block_size,
                cache_options=cache_options,
                compression=compression,
                **kwargs,
            )
        target = self._strip_protocol(path)
        if "x" in mode and os.path.exists(target):
            raise FileExistsError(target)
        staged = StagedFile(target, on_complete=self._complete)
        if "b" in mode:
            return staged
        text_args = {key: kwargs[key] for key in ("encoding", "errors", "newline") if key in kwargs}
        return _StagedText(staged, **text_args)

    def _complete(self, temp: str, target: str) -> None:
        with self._lock:
            if self.holding:
                self.pending.append((temp, target))
                return
        replace_atomically(temp, target)

    def hold_renames(self) -> None:
        """Start a group: completed files wait for :meth:`commit`; leftovers of an unfinished group are dropped."""
        self.discard()
        with self._lock:
            self.holding = True

    def commit(self) -> None:
        with self._lock:
            pending, self.pending, self.holding = self.pending, [], False
        for temp, target in pending:
            replace_atomically(temp, target)

    def discard(self) -> None:
        with self._lock:
            pending, self.pending, self.holding = self.pending, [], False
        for temp, _ in pending:
            Path(temp).unlink(missing_ok=True)
            _track(temp, live=False)


def make_atomic(dataset: Any) -> AtomicLocalFileSystem | None:
    """Give ``dataset`` an :class:`AtomicLocalFileSystem` if it writes through fsspec's local file system;
    return it (also when the dataset already has one), or None when the dataset does not store locally this way."""
    fs = getattr(dataset, "_fs", None)
    if isinstance(fs, AtomicLocalFileSystem):
        return fs
    if not isinstance(fs, LocalFileSystem):
        return None
    # skip_instance_cache: fsspec shares instances with equal arguments; each dataset holds its own renames
    atomic = AtomicLocalFileSystem(auto_mkdir=getattr(fs, "auto_mkdir", True), skip_instance_cache=True)
    dataset._fs = atomic
    return atomic


def _holds_renames(dataset: Any) -> bool:
    """Renames can wait for the node's other outputs when the dataset is a plain kedro-datasets (or project)
    class that does not read its file back after saving, and writes over a fixed path (not versioned)."""
    if isinstance(dataset, AbstractVersionedDataset) and getattr(dataset, "_version", None):
        return False
    return type(dataset).__module__.startswith(_HELD_MODULES)


class AtomicWritesHook:
    """Makes every local-file output of a node atomic, and the node's outputs change together (module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, list[AtomicLocalFileSystem]] = {}
        self._unsaved: dict[str, set[str]] = {}
        self._warned: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # A parallel runner (Dask) ships the project's hooks to its workers: each worker starts with its own
        # lock and no groups in flight (those belong to the nodes running in this process).
        return {"_warned": set(self._warned)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
        self._warned = state["_warned"]

    @hook_impl
    def before_node_run(self, node, catalog) -> None:
        held: list[AtomicLocalFileSystem] = []
        for name in node.outputs:
            dataset = catalog.get(name)
            if dataset is None:
                continue
            fs = make_atomic(dataset)
            if fs is None:
                self._warn_not_atomic(name, dataset)
            elif _holds_renames(dataset):
                fs.hold_renames()
                held.append(fs)
        with self._lock:
            self._held[node.name] = held
            self._unsaved[node.name] = set(node.outputs)

    @hook_impl
    def after_dataset_saved(self, dataset_name, data, node) -> None:
        with self._lock:
            unsaved = self._unsaved.get(node.name)
            if unsaved is None:
                return
            unsaved.discard(dataset_name)
            if unsaved:
                return
            del self._unsaved[node.name]
            held = self._held.pop(node.name, [])
        for fs in held:
            fs.commit()

    @hook_impl
    def on_node_error(self, node) -> None:
        self._discard(node.name)

    @hook_impl
    def on_pipeline_error(self) -> None:
        with self._lock:
            names = list(self._held)
        for name in names:
            self._discard(name)

    def _discard(self, node_name: str) -> None:
        with self._lock:
            held = self._held.pop(node_name, [])
            self._unsaved.pop(node_name, None)
        for fs in held:
            fs.discard()

    def _warn_not_atomic(self, name: str, dataset: Any) -> None:
        try:
            description = dataset._describe()
        except Exception:
            description = {}
        kind = type(dataset).__name__
        if (
            "filepath" in description
            and kind not in self._warned
            and not getattr(dataset, "writes_atomically", False)
        ):
            self._warned.add(kind)
            logger.warning(
                "%s (%s) does not write through fsspec's local file system: its saves are not atomic",
                name,
                kind,
            )
