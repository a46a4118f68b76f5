"""Fetching the official Amazon Reviews 2023 files of one category, resumably, with the standard library.

Each file is written to ``<name>.part`` and renamed to ``<name>`` only once its size equals the server's
Content-Length and it is whole gzip data (read to its end, where gzip keeps a checksum and the length), so a file
under its final name is always whole. An interrupted transfer leaves the ``.part`` behind; the next call asks
the server for the rest (an HTTP Range request) and appends it. The server's ETag or Last-Modified of the file,
kept beside it in ``<name>.part.json``, goes with that request as ``If-Range``: a file changed on the server since
is sent whole again instead of its tail. A server that ignores ``If-Range`` gives a spliced file, which fails the
gzip check: it is deleted and downloaded once more from the start.

This module downloads and nothing else: reading and filtering the files is
:mod:`mgfrec.data.sources.amazon2023`'s job, and showing progress is the caller's (see ``ProgressFn``).
"""

from __future__ import annotations

import difflib
import gzip
import http.client
import json
import re
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mgfrec import __version__
from mgfrec.output_folders import removed_if_left_empty

# The McAuley lab's public data host, which R2ec's preprocessing downloads from as well. The older
# https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023 serves the same layout (use --base-url).
DEFAULT_BASE_URL = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023"

CATEGORIES = (
    "All_Beauty",
    "Amazon_Fashion",
    "Appliances",
    "Arts_Crafts_and_Sewing",
    "Automotive",
    "Baby_Products",
    "Beauty_and_Personal_Care",
    "Books",
    "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Electronics",
    "Gift_Cards",
    "Grocery_and_Gourmet_Food",
    "Handmade_Products",
    "Health_and_Household",
    "Health_and_Personal_Care",
    "Home_and_Kitchen",
    "Industrial_and_Scientific",
    "Kindle_Store",
    "Magazine_Subscriptions",
    "Movies_and_TV",
    "Musical_Instruments",
    "Office_Products",
    "Patio_Lawn_and_Garden",
    "Pet_Supplies",
    "Software",
    "Sports_and_Outdoors",
    "Subscription_Boxes",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
    "Video_Games",
    "Unknown",
)

CHUNK = 1 << 20
_CATEGORY = re.compile(r"^[A-Za-z0-9_]+$")
_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-\d+|\*)/(\d+|\*)$")

ProgressFn = Callable[[str, int, "int | None"], None]
"""Called as ``(file name, bytes on disk so far, total bytes or None)`` while a file downloads."""


class DownloadError(RuntimeError):
    """A download that did not produce the whole file; the message says which URL and what to do."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status  # the HTTP status when the server answered with an error


@dataclass(frozen=True)
class Downloaded:
    """One file's outcome: ``downloaded``, ``resumed`` (a .part was continued) or ``present`` (skipped)."""

    path: Path
    size: int
    status: str


def category_files(category: str, base_url: str = DEFAULT_BASE_URL) -> list[tuple[str, str]]:
    """``(url, file name)`` of the reviews and the meta file of ``category``."""
    if not _CATEGORY.match(category):
        raise ValueError(
            f"--category {category!r}: a category name has only letters, digits and '_', e.g. CDs_and_Vinyl"
        )
    parts = urlsplit(base_url)
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        shown = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment=""))
        raise ValueError(
            f"--base-url {shown}: remove the user:password@ part, query string and fragment; the download sends "
            "neither credentials nor query strings (the files are public: serve a mirror without them)"
        )
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--base-url {base_url!r}: give an http:// or https:// address (a mirror's root)")
    base = base_url.rstrip("/")
    return [
        (f"{base}/raw/review_categories/{category}.jsonl.gz", f"{category}.jsonl.gz"),
        (f"{base}/raw/meta_categories/meta_{category}.jsonl.gz", f"meta_{category}.jsonl.gz"),
    ]


def download_category(
    category: str,
    out: str | Path,
    base_url: str = DEFAULT_BASE_URL,
    progress: ProgressFn | None = None,
    retries: int = 2,
    retry_wait_s: float = 2.0,
    timeout_s: float = 60.0,
) -> list[Downloaded]:
    """Download ``<category>.jsonl.gz`` and ``meta_<category>.jsonl.gz`` into ``out``."""
    files = category_files(category, base_url)  # checks the name and the URL before anything is created
    out = Path(out)
    done = []
    with removed_if_left_empty(out):  # a folder this call made and left empty (a 404) goes again
        out.mkdir(parents=True, exist_ok=True)
        for url, name in files:
            try:
                done.append(download_file(url, out / name, progress, retries, retry_wait_s, timeout_s))
            except DownloadError as exc:
                if exc.status == 404 and category not in CATEGORIES:
                    close = difflib.get_close_matches(category, CATEGORIES, n=1, cutoff=0.6)
                    hint = f" Did you mean {close[0]}?" if close else f" Categories are: {', '.join(CATEGORIES)}."
                    raise DownloadError(f"{exc}.{hint}", exc.status) from None
                raise
    return done


def download_file(
    url: str,
    dest: str | Path,
    progress: ProgressFn | None = None,
    retries: int = 2,
    retry_wait_s: float = 2.0,
    timeout_s: float = 60.0,
) -> Downloaded:
    """Fetch ``url`` into ``dest`` through ``dest.part``, resuming a partial file; up to ``retries`` more
    attempts continue an interrupted transfer. A file already at ``dest`` is left as it is."""
    dest = Path(dest)
    if dest.is_file():
        if dest.name.endswith(".gz") and (problem := _not_gzip(dest)) is not None:  # an earlier bad file
            raise DownloadError(f"{dest}: {problem}; delete it and run the command again to fetch it anew")
        return Downloaded(dest, dest.stat().st_size, "present")
    part = dest.with_name(dest.name + ".part")
    attempt, restarted = 0, False
    while True:
        try:
            size, sized, continued = _attempt(url, part, dest.name, progress, timeout_s)
            if dest.name.endswith(".gz"):
                _check_gzip(url, part, sized)
        except _Damaged as exc:
            _discard(part)
            if restarted or not continued:  # the server's own file is damaged: fetching it again would not help
                raise DownloadError(f"{exc}; it was deleted. Check --base-url, or try again later") from None
            # the bytes kept from before were of another version of the file (changed on the server since): the
            # resume spliced two versions, so the whole file comes again, once
            restarted = True
            continue
        except _Interrupted as exc:
            if attempt == retries:
                raise DownloadError(str(exc)) from None
            attempt += 1
            time.sleep(retry_wait_s)  # a dropped connection is often a busy server; give it a moment
            continue
        part.replace(dest)
        _sidecar(part).unlink(missing_ok=True)
        return Downloaded(dest, size, "resumed" if continued else "downloaded")


def _sidecar(part: Path) -> Path:
    """Where the server's validator (ETag or Last-Modified) of the file being fetched into ``part`` is kept."""
    return part.with_name(part.name + ".json")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _sidecar(part).unlink(missing_ok=True)


def _validator(headers: Any) -> str | None:
    """What ``If-Range`` may carry for this response: a strong ETag, else Last-Modified (RFC 9110 13.1.5 rules out
    weak ETags there)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified") or None


def _remember(part: Path, url: str, validator: str | None) -> None:
    """Keep (or forget) the validator of the file whose first bytes ``part`` is about to receive."""
    if validator is None:
        _sidecar(part).unlink(missing_ok=True)
    else:
        _sidecar(part).write_text(json.dumps({"url": url, "if_range": validator}), encoding="utf-8")


def _remembered(part: Path, url: str) -> str | None:
    """The validator kept for ``part`` when it came from ``url``; None without one (or a damaged sidecar)."""
    try:
        kept = json.loads(_sidecar(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("url") != url or not isinstance(kept.get("if_range"), str):
        return None
    return kept["if_range"]


def _not_gzip(path: Path) -> str | None:
    """Why ``path`` is not gzip data (its first bytes), or None."""
    with path.open("rb") as handle:
        head = handle.read(2)
    return None if head == b"\x1f\x8b" else f"not gzip data (it begins {head!r}; an error or login page?)"


def _check_gzip(url: str, part: Path, sized: bool) -> None:
    """Refuse a downloaded ``.gz`` that is not whole gzip data. Not gzip at all (a server's error page sent as 200):
    deleted, it is no prefix of the file. Read to its end, where gzip keeps a checksum and the length: data that
    ends early is a transfer cut short (kept to resume) when the server gave no size (``sized`` False); a wrong
    checksum, or damage anywhere once the size matched, is :class:`_Damaged` (two versions spliced by a resume)."""
    problem = _not_gzip(part)
    if problem is not None:
        _discard(part)
        raise DownloadError(f"{url}: the server sent {problem}; check --base-url")
    try:
        with gzip.open(part, "rb") as handle:
            while handle.read(CHUNK):
                pass
    except EOFError as exc:
        if sized:
            raise _Damaged(f"{url}: the file has the server's size but its gzip data ends early ({exc})") from None
        raise _Interrupted(
            f"{url}: the server gave no Content-Length and its gzip data ends early ({exc}); the transfer was cut "
            f"short. The partial file is kept at {part}; run the command again to resume"
        ) from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile (CRC or length) is an OSError
        raise _Damaged(f"{url}: the downloaded file is not whole gzip data ({exc})") from None


class _Damaged(Exception):
    """A complete transfer whose gzip data is damaged: resumed bytes of another version, or a bad copy."""


class _Interrupted(Exception):
    """A failed attempt worth repeating (no connection, a 5xx, a transfer cut short); any .part is kept."""


def _attempt(url: str, part: Path, name: str, progress: ProgressFn | None, timeout_s: float) -> tuple[int, bool, bool]:
    """One request: continue ``part`` from its current size; return the final size once complete, whether the
    server said what that size is (a Content-Length or Content-Range) and it was checked, and whether the file
    continues bytes kept from before (False: the server sent it whole)."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"mgfrec/{__version__} (urllib)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if (validator := _remembered(part, url)) is not None:
            headers["If-Range"] = validator  # changed on the server since: the server sends it whole (200)
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        _, total = _content_range(exc.headers.get("Content-Range"))
        if exc.code == 416 and total == offset:
            return offset, True, True  # the .part already holds the whole file; only the rename was missing
        if exc.code == 416:
            _discard(part)  # longer than the remote file: not a prefix of it, so start again
            return _attempt(url, part, name, progress, timeout_s)
        if exc.code == 404:
            raise DownloadError(
                f"{url}: HTTP 404 Not Found: the server has no such file; check the category name or --base-url", 404
            ) from None
        if exc.code >= 500:  # the server's trouble, often passing: worth another attempt
            raise _Interrupted(f"{url}: HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Interrupted(f"{url}: cannot connect ({reason}); check the network or --base-url") from None

    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                raise DownloadError(
                    f"{url}: asked for bytes from {offset}, the server sent from {start}; delete {part} and retry"
                )
            mode = "ab"
        else:  # 200: the whole file (again: the server ignored Range, or If-Range said the file changed)
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            _remember(part, url, _validator(response.headers))
        have = offset
        if progress:
            progress(name, have, total)
        try:
            with part.open(mode) as handle:
                while chunk := response.read(CHUNK):
                    handle.write(chunk)
                    have += len(chunk)
                    if progress:
                        progress(name, have, total)
        except (OSError, http.client.HTTPException) as exc:
            raise _Interrupted(
                f"{url}: transfer interrupted at {have:,} of {_size(total)} bytes ({exc}); "
                f"{part} is kept, run again to resume"
            ) from None
    if total is not None and have != total:
        raise _Interrupted(
            f"{url}: received {have:,} of {total:,} bytes (Content-Length); the file is short. "
            f"The partial file is kept at {part}; run the command again to resume"
        )
    return have, total is not None, offset > 0


def _size(total: int | None) -> str:
    return f"{total:,}" if total is not None else "an unknown number of"


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of ``bytes 100-199/200`` (a 206) or ``bytes */200`` (a 416)."""
    match = _CONTENT_RANGE.match((header or "").strip())
    if not match:
        return None, None
    return (int(match[1]) if match[1] else None), (int(match[2]) if match[2] != "*" else None)
