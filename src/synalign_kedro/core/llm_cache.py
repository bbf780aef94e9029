"""A durable, content-addressed cache of LLM chat calls (one SQLite file).

Every completed call is committed as soon as its answer arrives, under the sha256 of the endpoint's
*identity* (model, never the ephemeral URL of an embedded server), the messages and the sampling
settings. A re-run, or a run resumed after ``kill -9``, finds every finished call here and makes no call
whose answer is cached (the DataDreamer pattern). SQLite in WAL mode gives atomic commits that survive a
killed process, and lets several threads (``max_concurrency``) write through one connection guarded by a
lock. Transport failures and HTTP errors are never cached; malformed answers are (they are answers, and
the re-ask that follows them is itself a cached call).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path


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


class LLMCallCache:
    """``get(key)`` / ``put(key, call)`` over a SQLite table; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        with self._lock:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, identity TEXT, request TEXT, "
                "response TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL, created REAL)"
            )
            self._connection.commit()

    def get(self, key: str) -> CachedCall | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT response, prompt_tokens, completion_tokens, seconds FROM calls WHERE key = ?", (key,)
            ).fetchone()
        return (
            None
            if row is None
            else CachedCall(row[0], int(row[1] or 0), int(row[2] or 0), float(row[3] or 0.0))
        )

    def put(self, key: str, identity: str, request: dict, call: CachedCall) -> None:
        with self._lock:
            self._connection.execute(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    identity,
                    json.dumps(request, ensure_ascii=False, sort_keys=True),
                    call.text,
                    call.prompt_tokens,
                    call.completion_tokens,
                    call.seconds,
                    time.time(),
                ),
            )
            self._connection.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()
