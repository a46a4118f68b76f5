"""A SQLite cache of user agent responses, and the wrapper that puts it in front of any cacheable backend.

Training asks the user agent about the same (history, grounded title, items) again and again: the rollouts
of one GRPO group share a history and often ground the same title, and later epochs revisit samples. A
response is stored under :func:`cache_key`: a SHA-256 over the full prompt together with the backend, the
model and every sampling setting, so changing any of them can never serve a stale answer. Keys are built by
the backend (``cache_key(request)``), which is the only party that knows its prompt and settings; a backend
without ``cache_key`` (``none``, ``simulated``) is not cached.

The file is an ordinary SQLite database (WAL journal), safe to share between the threads of one process
(one connection, serialised by a lock) and between processes (SQLite's own locking, with a busy timeout).
Failed requests are never stored: a backend raises instead of answering.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mgfrec.registry import method_named
from mgfrec.user_agents.base import FeedbackRequest, PartialFeedbackError, UserAgent, UserAgentError, agent_stats

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""
_CHUNK = 500  # host parameters per SELECT: far below SQLite's limit on any build
_COLUMNS = ["key", "response", "created_at"]


def _cannot_open(path: Path, exc: sqlite3.Error | OSError) -> UserAgentError:
    reason = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else exc
    return UserAgentError(f"user_agent.cache_path: cannot open the SQLite cache {path}: {reason}")


def _another_kind(path: Path, columns: list[str]) -> UserAgentError:
    return UserAgentError(
        f"user_agent.cache_path: {path} is a SQLite file of another kind (its 'responses' table has the columns "
        f"{', '.join(columns)}): not an mgfrec response cache; name another file"
    )


def cache_key(**parts: Any) -> str:
    """SHA-256 hex of the JSON of ``parts`` (keys sorted): the same parts always give the same key."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()  # a lone surrogate: no UnicodeEncodeError


_BUSY_S = 30.0
"""How long a cache waits for another process's lock on the file."""


def _to_wal(conn: sqlite3.Connection) -> None:
    """Put the database in WAL mode, waiting up to :data:`_BUSY_S` for another process that does the same: switching
    a new file's journal mode answers "database is locked" at once, past SQLite's busy handler, so two commands
    opening one new cache together failed (review s39)."""
    deadline = time.monotonic() + _BUSY_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class ResponsesNotCached(UserWarning):
    """Answers the user agent gave could not be written to the response cache; they are used all the same."""


class ResponseCache:
    """Responses by key in the SQLite file at ``path`` (created, with its folder, if absent)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.not_stored = 0  # answers that a failed write left out of the file
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # a file where a folder goes: named as the field
            # check_same_thread=False: the lock below serialises every use of the one connection.
            self._conn = sqlite3.connect(self.path, timeout=_BUSY_S, check_same_thread=False)
            _to_wal(self._conn)
            self._conn.execute(_SCHEMA)
            self._conn.commit()
            columns = [row[1] for row in self._conn.execute("PRAGMA table_info(responses)")]
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise _cannot_open(self.path, exc) from None
        if columns[:3] != _COLUMNS:  # another program's database with such a table
            self.close()
            raise _another_kind(self.path, columns)

    @staticmethod
    def check(path: str | Path) -> None:
        """Refuse, without writing anything, a ``path`` the cache could not open: a folder, a path under a file, a
        file that is no SQLite database or another program's. For a command to ask before its long work: it was
        found when the user agent was built, after the recall model's fit (review s36). A file not there yet is
        fine (it is made when the cache opens)."""
        path = Path(path)
        if not path.exists():
            parent = next((p for p in path.parents if p.exists()), None)
            if parent is not None and not parent.is_dir():
                raise UserAgentError(
                    f"user_agent.cache_path: cannot open the SQLite cache {path}: {parent} is a file, not a folder"
                )
            return
        if path.is_dir():
            raise UserAgentError(f"user_agent.cache_path: cannot open the SQLite cache {path}: it is a folder")
        try:
            with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
                columns = [row[1] for row in db.execute("PRAGMA table_info(responses)")]
        except (sqlite3.Error, OSError) as exc:
            raise _cannot_open(path, exc) from None
        if columns and columns[:3] != _COLUMNS:
            raise _another_kind(path, columns)

    def _failed(self, exc: sqlite3.Error, doing: str) -> UserAgentError:
        return UserAgentError(
            f"user_agent.cache_path: cannot {doing} the SQLite cache {self.path}: {exc}; delete the file (its answers "
            "are asked again) or name another one"
        )

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise UserAgentError(f"the user agent cache {self.path} is closed")
        return self._conn

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored responses among ``keys``."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        with self._lock:
            db = self._db()
            try:
                for i in range(0, len(keys), _CHUNK):
                    chunk = keys[i : i + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    found.update(db.execute(f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk))
            except sqlite3.Error as exc:  # a damaged page ("database disk image is malformed"), a lock held on
                raise self._failed(exc, "read") from None
        return found

    def put_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Store responses (a key stored twice keeps the latest). A write that fails (another process holding the
        file past the 30 s busy timeout, a damaged file) is a :class:`ResponsesNotCached` warning: the answers were
        paid for and stay with the caller. It is said once per cache, then counted (:attr:`not_stored`, the user
        agent's ``cache_not_stored``): Python shows a warning's text once, so a batch of a count already reported
        went unsaid, and the total could not be known (review s36)."""
        now = time.time()
        rows = [(k, v, now) for k, v in items]
        if not rows:
            return
        with self._lock:
            db = self._db()
            try:
                with db:  # one transaction
                    db.executemany(
                        "INSERT OR REPLACE INTO responses (key, response, created_at) VALUES (?, ?, ?)", rows
                    )
            except (sqlite3.Error, UnicodeError) as exc:  # UnicodeError: a plugin's reply holding a lone surrogate
                first = self.not_stored == 0
                self.not_stored += len(rows)
                if first:
                    warnings.warn(
                        f"user_agent.cache_path: {len(rows)} answers were not stored in the SQLite cache {self.path} "
                        f"({exc}); they are used, and asked again next time (every answer left out is counted as "
                        "the user agent's cache_not_stored)",
                        ResponsesNotCached,
                        stacklevel=2,
                    )

    def __len__(self) -> int:
        with self._lock:
            try:
                return self._db().execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            except sqlite3.Error as exc:
                raise self._failed(exc, "read") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class CachedUserAgent:
    """A user agent answering from :class:`ResponseCache` first, and asking ``inner`` only for the rest.

    Requests with equal keys within one batch are sent once. ``stats()`` adds ``cache_hits`` (requests
    answered without the backend: stored, or a duplicate in the batch), ``cache_misses`` and ``cache_not_stored``
    (answers a failed write left out of the file).
    """

    def __init__(self, inner: UserAgent, path: str | Path):
        if not callable(getattr(inner, "cache_key", None)):
            raise TypeError(f"{type(inner).__name__} defines no cache_key(request), so it cannot be cached")
        self.inner = inner
        self.cache = ResponseCache(path)
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def feedback(self, requests: Sequence[FeedbackRequest]) -> list[str]:
        keys = [self.inner.cache_key(r) for r in requests]  # type: ignore[attr-defined]
        at = next((n for n, k in enumerate(keys) if not (isinstance(k, str) and k)), None)
        if at is not None:  # None for every request (a forgotten return) answered a batch with one reply (review s31)
            raise UserAgentError(
                f"{self._who('cache_key')} returned {keys[at]!r:.40} for request {at}, not a non-empty "
                "str: its replies cannot be cached by it"
            )
        answers = self.cache.get_many(keys)
        scrub = getattr(self.inner, "scrub_reply", None)
        if callable(scrub):  # a cache written before replies were scrubbed may hold one quoting the key
            answers = {key: scrub(text) for key, text in answers.items()}
        todo: dict[str, FeedbackRequest] = {}
        for key, request in zip(keys, requests, strict=True):
            if key not in answers:
                todo.setdefault(key, request)
        with self._lock:  # counted before the call: a request sent on is a miss whether or not it is answered
            self._hits += len(requests) - len(todo)
            self._misses += len(todo)
        if todo:
            try:
                fresh = self.inner.feedback(list(todo.values()))
            except PartialFeedbackError as exc:  # keep the answers that came back: they were paid for
                got = {k: a for k, a in zip(todo, exc.answers, strict=False) if a is not None}
                self.cache.put_many(got.items())
                # answers[i] is request i's, as PartialFeedbackError promises: the inner error's were numbered
                # over the uncached, deduplicated requests
                mapped = [answers.get(k, got.get(k)) for k in keys]
                raise PartialFeedbackError(str(exc), mapped, sent=exc.sent) from None
            if not isinstance(fresh, list) or len(fresh) != len(todo):  # a generator was a len() traceback
                got = len(fresh) if isinstance(fresh, list) else f"a {type(fresh).__name__} of"
                raise UserAgentError(f"{self._who('feedback')} returned {got} feedbacks for {len(todo)} requests")
            wrong = next((n for n, a in enumerate(fresh) if not isinstance(a, str)), None)
            if wrong is not None:  # stored first, it was read back as text on the next run (review s31)
                raise UserAgentError(
                    f"{self._who('feedback')} answer {wrong} is a {type(fresh[wrong]).__name__}; feedback must be str "
                    "(nothing was cached)"
                )
            new = dict(zip(todo, fresh, strict=True))
            self.cache.put_many(new.items())
            answers.update(new)
        return [answers[k] for k in keys]

    def _who(self, method: str) -> str:
        """The backend that broke its contract, for the message: its registry name and package where it is
        registered (review s37: its module and class alone, for a plugin too)."""
        return method_named(self.inner, method, "user_agent")

    def cache_key(self, request: FeedbackRequest) -> str:
        return self.inner.cache_key(request)  # type: ignore[attr-defined]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **agent_stats(self.inner),
                "cache_hits": self._hits,
                "cache_misses": self._misses,
                "cache_not_stored": self.cache.not_stored,
            }

    def close(self) -> None:
        self.inner.close()
        self.cache.close()
