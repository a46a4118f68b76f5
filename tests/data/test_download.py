"""``mgfrec.data.download`` and ``mgfrec data download`` against a real HTTP server on 127.0.0.1.

The server serves the fixture category gzipped under the official layout, honours Range requests (unless
told not to), and can hang up after a set number of body bytes, as a dropped connection would.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mgfrec.cli.main import app
from mgfrec.data.download import DownloadError, download_category, download_file

pytestmark = pytest.mark.reliability

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "amazon2023"
REVIEWS_URL = "/raw/review_categories/CDs_and_Vinyl.jsonl.gz"
META_URL = "/raw/meta_categories/meta_CDs_and_Vinyl.jsonl.gz"
# Fixed gzip mtime so the bytes are the same in every run; repeated so that files span several chunks.
REVIEWS = gzip.compress((FIXTURE / "CDs_and_Vinyl.jsonl").read_bytes() * 40, mtime=0)
META = gzip.compress((FIXTURE / "meta_CDs_and_Vinyl.jsonl").read_bytes(), mtime=0)


@dataclass
class Server:
    """What the test server holds and what it was asked."""

    files: dict[str, bytes]
    url: str = ""
    ranges: bool = True  # honour Range headers
    lengths: bool = True  # send Content-Length (without it the body ends when the connection closes)
    cuts: list[int] = field(default_factory=list)  # next responses send only this many body bytes
    failures: list[int] = field(default_factory=list)  # next requests are answered with these statuses
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    etags: dict[str, str] = field(default_factory=dict)  # sent as ETag; If-Range honoured for these paths
    if_ranges: list[str | None] = field(default_factory=list)  # the If-Range header of each request


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server dispatches GET to
        state: Server = self.server.state  # type: ignore[attr-defined]
        wanted = self.headers.get("Range")
        state.requests.append((self.path, wanted))
        state.if_ranges.append(self.headers.get("If-Range"))
        body = state.files.get(self.path)
        if body is None or state.failures:
            self.send_error(state.failures.pop(0) if state.failures else 404)
            return
        etag = state.etags.get(self.path)
        if etag is not None and self.headers.get("If-Range") not in (None, etag):
            wanted = None  # RFC 9110: the file changed since the client's copy, so it is sent whole
        start = int(re.match(r"bytes=(\d+)-$", wanted)[1]) if wanted and state.ranges else 0
        if start >= len(body) and start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if state.lengths:
            self.send_header("Content-Length", str(len(body) - start))
        if etag is not None:
            self.send_header("ETag", etag)
        self.end_headers()
        payload = body[start:]
        if state.cuts:
            payload = payload[: state.cuts.pop(0)]  # then the connection closes (HTTP/1.0)
        self.wfile.write(payload)

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(files={REVIEWS_URL: REVIEWS, META_URL: META})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = state  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def fetch(server: Server, dest: Path, **kwargs):
    return download_file(server.url + REVIEWS_URL, dest, **{"retries": 0, "retry_wait_s": 0, **kwargs})


def test_downloads_both_files_into_the_official_names(server, tmp_path):
    seen: list[tuple[str, int, int | None]] = []
    files = download_category("CDs_and_Vinyl", tmp_path, server.url, progress=lambda *a: seen.append(a), retry_wait_s=0)
    assert [(f.path.name, f.size, f.status) for f in files] == [
        ("CDs_and_Vinyl.jsonl.gz", len(REVIEWS), "downloaded"),
        ("meta_CDs_and_Vinyl.jsonl.gz", len(META), "downloaded"),
    ]
    assert (tmp_path / "CDs_and_Vinyl.jsonl.gz").read_bytes() == REVIEWS
    assert (tmp_path / "meta_CDs_and_Vinyl.jsonl.gz").read_bytes() == META
    assert not list(tmp_path.glob("*.part"))
    assert seen[-1] == ("meta_CDs_and_Vinyl.jsonl.gz", len(META), len(META))
    assert [r[1] for r in server.requests] == [None, None]

    again = download_category("CDs_and_Vinyl", tmp_path, server.url)
    assert [f.status for f in again] == ["present", "present"] and len(server.requests) == 2


def test_resume_after_the_server_cuts_a_transfer_short(server, tmp_path):
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    server.cuts = [1000]
    with pytest.raises(DownloadError, match=rf"received 1,000 of {len(REVIEWS):,} bytes"):
        fetch(server, dest)
    part = tmp_path / "CDs_and_Vinyl.jsonl.gz.part"
    assert not dest.exists() and part.read_bytes() == REVIEWS[:1000]

    done = fetch(server, dest)
    assert done.status == "resumed" and dest.read_bytes() == REVIEWS and not part.exists()
    assert server.requests[-1] == (REVIEWS_URL, "bytes=1000-")


def test_retries_continue_within_one_call(server, tmp_path):
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    server.cuts = [700, 900]
    done = fetch(server, dest, retries=2)
    assert done.status == "resumed" and dest.read_bytes() == REVIEWS
    assert [r[1] for r in server.requests] == [None, "bytes=700-", "bytes=1600-"]


def test_truncated_file_fails_the_size_check_and_keeps_the_part(server, tmp_path):
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    server.cuts = [300, 200]
    with pytest.raises(DownloadError) as err:
        fetch(server, dest, retries=1)
    message = str(err.value)
    assert f"received 500 of {len(REVIEWS):,} bytes (Content-Length); the file is short" in message
    assert f"{dest}.part" in message and "run the command again to resume" in message
    assert not dest.exists() and Path(f"{dest}.part").stat().st_size == 500


def test_a_transfer_cut_short_without_a_content_length_is_kept_to_resume(server, tmp_path):
    """Without a Content-Length nothing was checked: the half file was renamed into place as "downloaded"."""
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    server.lengths, server.cuts = False, [len(REVIEWS) // 2]
    with pytest.raises(DownloadError, match=r"no Content-Length and its gzip data ends early .* run the command again"):
        fetch(server, dest)
    part = tmp_path / "CDs_and_Vinyl.jsonl.gz.part"
    assert not dest.exists() and part.read_bytes() == REVIEWS[: len(REVIEWS) // 2]
    done = fetch(server, dest)  # the rest, by a Range request, and this time the gzip data ends whole
    assert done.status == "resumed" and dest.read_bytes() == REVIEWS and not part.exists()


def test_an_error_page_sent_as_200_is_not_kept_and_a_bad_present_file_is_named(server, tmp_path):
    """A login or error page answered with 200 was saved as the .jsonl.gz and reported "downloaded"; run again, it
    was "present", so 'mgfrec data prepare's advice to fetch it again did nothing."""
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    server.files[REVIEWS_URL] = b"<html>please log in</html>"
    with pytest.raises(DownloadError, match=r"the server sent not gzip data \(it begins b'<h'.*check --base-url"):
        fetch(server, dest)
    assert list(tmp_path.iterdir()) == []  # no prefix of the real file: nothing kept
    dest.write_bytes(b"<html>an earlier bad download</html>")
    with pytest.raises(DownloadError, match=r"CDs_and_Vinyl.jsonl.gz: not gzip data .* delete it and run the command"):
        fetch(server, dest)


# The same reviews, changed from the first line on (a re-export on the server): its gzip bytes differ early.
CHANGED = gzip.compress(b'{"changed": true}\n' + (FIXTURE / "CDs_and_Vinyl.jsonl").read_bytes() * 40, mtime=0)


def test_a_resume_after_the_file_changed_on_the_server_is_not_spliced(server, tmp_path):
    """The server (it sends no ETag) replaced the file after a transfer was cut: the resume appended the new file's
    tail to the old file's head and renamed that to the final name ("resumed"; "present" ever after). A gzip
    whose checksum fails is now deleted and the file fetched whole, once."""
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    server.cuts = [1000]
    with pytest.raises(DownloadError, match=r"received 1,000 of"):
        fetch(server, dest)
    server.files[REVIEWS_URL] = CHANGED
    done = fetch(server, dest)
    assert dest.read_bytes() == CHANGED and done.status == "downloaded" and done.size == len(CHANGED)
    assert [r[1] for r in server.requests] == [None, "bytes=1000-", None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CDs_and_Vinyl.jsonl.gz"]  # no .part nor its .json


def test_if_range_fetches_a_changed_file_whole_in_one_request(server, tmp_path):
    """With the server's ETag kept beside the .part, a resume asks "the rest, if it is still this file"."""
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    server.etags[REVIEWS_URL] = '"v1"'
    server.cuts = [1000, 500]
    for _ in range(2):
        with pytest.raises(DownloadError, match=r"the file is short"):
            fetch(server, dest)
    assert server.if_ranges == [None, '"v1"'] and Path(f"{dest}.part").stat().st_size == 1500  # unchanged: resumed
    server.files[REVIEWS_URL], server.etags[REVIEWS_URL] = CHANGED, '"v2"'
    done = fetch(server, dest)
    assert dest.read_bytes() == CHANGED and done.status == "downloaded"
    assert server.requests[-1] == (REVIEWS_URL, "bytes=1500-") and server.if_ranges[-1] == '"v1"'
    assert len(server.requests) == 3 and sorted(p.name for p in tmp_path.iterdir()) == [dest.name]


def test_a_damaged_gzip_from_the_server_is_refused_even_with_the_right_size(server, tmp_path):
    """A file of the announced size was renamed into place unread: damage inside it surfaced only in 'data
    prepare'. It is read to its end now; a whole transfer that fails is the server's copy, not retried."""
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    damaged = bytearray(REVIEWS)
    damaged[-8] ^= 0xFF  # the CRC in the gzip trailer
    server.files[REVIEWS_URL] = bytes(damaged)
    wanted = r"not whole gzip data \(CRC check failed.*it was deleted\. Check --base-url"
    with pytest.raises(DownloadError, match=wanted):
        fetch(server, dest, retries=2)
    assert list(tmp_path.iterdir()) == [] and len(server.requests) == 1


def test_server_without_range_support_restarts_the_file(server, tmp_path):
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    Path(f"{dest}.part").write_bytes(REVIEWS[:1234])
    server.ranges = False
    done = fetch(server, dest)
    assert dest.read_bytes() == REVIEWS and done.size == len(REVIEWS)


def test_complete_part_file_is_only_renamed(server, tmp_path):
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    Path(f"{dest}.part").write_bytes(REVIEWS)
    done = fetch(server, dest)
    assert done.status == "resumed" and dest.read_bytes() == REVIEWS
    assert server.requests == [(REVIEWS_URL, f"bytes={len(REVIEWS)}-")]  # answered 416, nothing sent


def test_server_error_is_retried(server, tmp_path):
    dest = tmp_path / "CDs_and_Vinyl.jsonl.gz"
    server.failures = [503]
    done = fetch(server, dest, retries=1)
    assert dest.read_bytes() == REVIEWS and done.status == "downloaded" and len(server.requests) == 2
    server.failures = [500, 500]
    with pytest.raises(DownloadError, match=r"HTTP 500"):
        fetch(server, tmp_path / "again.gz", retries=1)


def test_unknown_category_gives_a_clear_404(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        download_category("CDs_and_Vinly", tmp_path, server.url)
    message = str(err.value)
    assert f"{server.url}/raw/review_categories/CDs_and_Vinly.jsonl.gz: HTTP 404 Not Found" in message
    assert "Did you mean CDs_and_Vinyl?" in message
    assert err.value.status == 404 and not list(tmp_path.iterdir())
    with pytest.raises(DownloadError):  # a folder the call made for the files goes again: it was left empty
        download_category("CDs_and_Vinly", tmp_path / "new", server.url)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("url", ["not a url", "ftp://mirror/x", "127.0.0.1:8000", "file:///srv/amazon"])
def test_a_base_url_that_is_not_http_names_the_flag(tmp_path, url):
    """It was urllib's "unknown url type: 'not a url/raw/review_categories/...'", after the folder was made."""
    with pytest.raises(ValueError, match=r"--base-url .*: give an http:// or https:// address"):
        download_category("CDs_and_Vinyl", tmp_path / "out", url)
    assert not (tmp_path / "out").exists()


def test_unreachable_server_and_bad_category_name(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=r"cannot connect .*--base-url"):
        download_category("CDs_and_Vinyl", tmp_path, f"http://127.0.0.1:{port}", retries=1, retry_wait_s=0)
    with pytest.raises(ValueError, match=r"--category '../x': a category name has only letters"):
        download_category("../x", tmp_path)


def test_cli_download_then_prepare(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "raw"
    runner = CliRunner()
    args = [
        "data",
        "download",
        "amazon2023",
        "--category",
        "CDs_and_Vinyl",
        "--out",
        str(raw),
        "--base-url",
        server.url,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "CDs_and_Vinyl.jsonl.gz" in result.output and "next: mgfrec data prepare" in " ".join(result.output.split())

    out = tmp_path / "prepared"
    result = runner.invoke(
        app, ["data", "prepare", str(raw), "--out", str(out), "-o", "k_core=2", "-o", "min_items=3", "--json"]
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    # the served reviews are the fixture 40 times over: repeats of one user and item are dropped
    assert {k: counts[k] for k in ("users", "items", "interactions")} == {"users": 4, "items": 3, "interactions": 9}
    assert counts["rows"]["CDs_and_Vinyl.jsonl.gz"]["read"] == 25 * 40
    assert counts["rows"]["CDs_and_Vinyl.jsonl.gz"]["dropped_by_reason"]["duplicate_review"] == 25 * 39 + 1


def test_cli_download_errors_exit_2_with_the_reason(server, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "download", "amazon2023", "--category", "Nope", "--out", str(tmp_path), "--base-url", server.url]
    )
    assert result.exit_code == 2 and "HTTP 404 Not Found" in " ".join(result.output.split())
    lines = result.output.splitlines()  # the progress bar, stopped empty, wrote a blank line
    assert lines[0].startswith("downloading Nope from 127.0.0.1") and lines[1].startswith("error:"), result.output
    result = runner.invoke(app, ["data", "download", "movielens", "--category", "x", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "only 'amazon2023' can be downloaded" in result.output


@pytest.mark.reliability
@pytest.mark.parametrize(
    "url",
    ["http://alice:S3cretPW@{host}", "http://{host}/mirror?token=S3cretPW", "http://S3cretPW@{host}"],
    ids=["password", "query", "user"],
)
def test_credentials_in_the_base_url_are_refused_without_being_shown(server, tmp_path, url):
    # urllib sends neither; the password was printed in every error ("cannot connect (Name or service not known)")
    host = server.url.split("://", 1)[1]
    out = tmp_path / "raw"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "download",
            "amazon2023",
            "--category",
            "CDs_and_Vinyl",
            "--out",
            str(out),
            "--base-url",
            url.format(host=host),
        ],
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "--base-url http://" in text and "remove the user:password@ part" in text
    assert "S3cretPW" not in result.output and not out.exists() and not server.requests


def test_sigterm_during_a_transfer_stops_it_as_ctrl_c_does(tmp_path):
    """SIGTERM ended `data download` where it stood (exit -15, no word); it stops as every command does now: the
    bar ended, `stopped by SIGTERM`, exit 143."""
    import os
    import signal
    import subprocess
    import sys
    import time

    started = threading.Event()

    class Stall(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # headers, then nothing: the client waits in its read
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b" + b"\0" * 1000)
            self.wfile.flush()
            started.set()
            time.sleep(60)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stall)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    args = ["data", "download", "amazon2023", "--category", "CDs_and_Vinyl", "--out", str(tmp_path / "raw")]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mgfrec.cli.main", *args, "--base-url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert started.wait(60), "the download never reached the server"
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        httpd.shutdown()
    assert proc.returncode == 143, (proc.returncode, stderr)
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr


def download_cds(out, url: str, *flags: str):
    """``mgfrec data download amazon2023 --category CDs_and_Vinyl --out OUT --base-url URL FLAGS`` (CliRunner)."""
    args = ["data", "download", "amazon2023", "--category", "CDs_and_Vinyl", "--out", str(out), "--base-url", url]
    return CliRunner().invoke(app, [*args, *flags])


@pytest.mark.reliability
def test_a_server_that_never_answers_is_said_up_front_and_timed_out_by_the_flag(tmp_path):
    """A server accepting the connection and never answering: 3 minutes of silence, then "cannot connect" (s39)."""
    with socket.socket() as silent:  # the kernel accepts connections to a listening socket; nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = download_cds(tmp_path / "dl", url, "--timeout", "0.5", "--retries", "0")
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert said.startswith("downloading CDs_and_Vinyl from 127.0.0.1 (--timeout 0.5 s)"), said
    assert "timed out" in said and "Traceback" not in said
    assert not (tmp_path / "dl").exists()


@pytest.mark.parametrize("value", ["inf", "1e300"])
def test_a_timeout_too_large_for_a_socket_is_refused_by_the_flag(tmp_path, value):
    """--timeout inf was an OverflowError traceback from the socket (review s39)."""
    result = download_cds(tmp_path / "dl", "http://127.0.0.1:9", "--timeout", value)
    assert result.exit_code == 2 and "--timeout" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "dl").exists()
