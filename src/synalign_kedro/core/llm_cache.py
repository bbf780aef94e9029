"""A durable, content-addressed cache of LLM chat calls (one SQLite file).

Every completed call is committed as soon as its answer arrives and has been validated, under the sha256
of the endpoint's *identity* (the model, never the URL of an endpoint), the messages and the sampling
settings. A re-run, or a run resumed after ``kill -9``, finds every finished call here and makes no call
whose answer is cached (the DataDreamer pattern). SQLite in WAL mode gives atomic commits that survive a
killed process, and lets several threads (``max_concurrency``) write through one connection guarded by a
lock.

What is kept: only real answers of the model. Transport failures, HTTP errors and transport-level garbage
(HTTP 200 without choices, a body that is not an OpenAI chat completion) are never stored (the client
raises before :meth:`LLMCallCache.put`). Each stored answer records whether it passed the task's
validation (``valid``: 1, 0, or NULL for files written before this column existed), and how many times
the call was made (``attempts``): a run with ``llm.retry_failed: true`` calls again for the answers that
failed and replaces them (see :class:`~synalign_kedro.core.llm_client.LLMClient`).

Maintenance (documented in ``docs/generation.md``)::

    python -m synalign_kedro.core.llm_cache stats  data/02_intermediate/llm_cache/llm_calls.sqlite
    python -m synalign_kedro.core.llm_cache forget-failed  data/02_intermediate/llm_cache/llm_calls.sqlite
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_COLUMNS = {
    "key": "TEXT PRIMARY KEY",
    "identity": "TEXT",
    "request": "TEXT",
    "response": "TEXT",
    "prompt_tokens": "INTEGER",
    "completion_tokens": "INTEGER",
    "seconds": "REAL",
    "created": "REAL",
    "valid": "INTEGER",  # 1 passed the task's validation, 0 failed it, NULL unknown (older files)
    "attempts": "INTEGER",  # how many times this call was made (retry_failed replaces failed answers)
}


def call_key(identity: str, messages: list[dict], settings: dict) -> str:
    """sha256 of the canonical JSON of (identity, messages, sampling settings)."""
    payload = json.dumps(
        {"identity": identity, "messages": messages, "settings": settings},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedCall:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    valid: bool | None = None
    attempts: int = 1


class LLMCallCache:
    """``get(key)`` / ``put(key, ...)`` over a SQLite table; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        with self._lock:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
            columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS.items())
            self._connection.execute(f"CREATE TABLE IF NOT EXISTS calls ({columns})")
            present = {row[1] for row in self._connection.execute("PRAGMA table_info(calls)")}
            for name, kind in _COLUMNS.items():  # files from before `valid` / `attempts`
                if name not in present:
                    self._connection.execute(f"ALTER TABLE calls ADD COLUMN {name} {kind}")
            self._connection.commit()

    def get(self, key: str) -> CachedCall | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT response, prompt_tokens, completion_tokens, seconds, valid, attempts FROM calls "
                "WHERE key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        return CachedCall(
            row[0],
            int(row[1] or 0),
            int(row[2] or 0),
            float(row[3] or 0.0),
            None if row[4] is None else bool(row[4]),
            int(row[5] or 1),
        )

    def put(self, key: str, identity: str, request: dict, call: CachedCall) -> None:
        """Store (or replace) the answer of one call, with its validation outcome."""
        with self._lock:
            self._connection.execute(
                f"INSERT OR REPLACE INTO calls ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                (
                    key,
                    identity,
                    json.dumps(request, ensure_ascii=False, sort_keys=True),
                    call.text,
                    call.prompt_tokens,
                    call.completion_tokens,
                    call.seconds,
                    time.time(),
                    None if call.valid is None else int(call.valid),
                    call.attempts,
                ),
            )
            self._connection.commit()

    def mark(self, key: str, valid: bool) -> None:
        """Record the validation outcome of a stored answer (answers stored before it was recorded)."""
        with self._lock:
            self._connection.execute("UPDATE calls SET valid = ? WHERE key = ?", (int(valid), key))
            self._connection.commit()

    def stats(self) -> dict[str, int]:
        """Number of stored answers: all, valid, failed validation, unknown (older files)."""
        with self._lock:
            rows = self._connection.execute("SELECT valid, COUNT(*) FROM calls GROUP BY valid").fetchall()
        counts = {("unknown" if valid is None else "valid" if valid else "failed"): n for valid, n in rows}
        return {"calls": sum(counts.values()), **{k: counts.get(k, 0) for k in ("valid", "failed", "unknown")}}

    def forget_failed(self) -> int:
        """Delete the answers that failed validation; the next run asks for them again. Returns how many."""
        with self._lock:
            deleted = self._connection.execute("DELETE FROM calls WHERE valid = 0").rowcount
            self._connection.commit()
        return int(deleted)

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synalign_kedro.core.llm_cache", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["stats", "forget-failed"])
    parser.add_argument("path", help="the cache file, e.g. data/02_intermediate/llm_cache/llm_calls.sqlite")
    args = parser.parse_args(argv)
    if not Path(args.path).is_file():
        print(f"no cache file at {args.path}", file=sys.stderr)
        return 2
    cache = LLMCallCache(args.path)
    try:
        if args.command == "stats":
            print(json.dumps(cache.stats()))
        else:
            print(f"forgot {cache.forget_failed()} failed answers in {args.path}")
    finally:
        cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
