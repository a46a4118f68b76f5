"""Helpers of the serve tests: a scripted rollout engine installed as a real plugin, runs, and servers.

The tiny test policy is untrained, so it never writes a well-formed turn. The servers and the chat under
test are real subprocesses, where a test cannot monkeypatch, so the agent's turns come from a rollout engine
registered under ``mgfrec.rollout_engine`` by a plugin distribution (a ``.dist-info`` folder on
``PYTHONPATH``), exactly as a third-party engine would be. Its script grounds ``titles`` one after the other,
answers after the last one or as soon as the feedback asks for the final answer, and quotes the last
feedback it heard in its thought, so a test can see that typed feedback reached the agent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ENGINE_NAME = "scripted-test"
SCRIPT_TITLES = (3, 11, 19, 27)  # item indices the scripted agent grounds, in order

PLUGIN_SOURCE = """
from pydantic import BaseModel, ConfigDict

from mgfrec.rollout.scripted_engine import ScriptedEngine


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    titles: list[str]
    delay_s: float = 0.0  # seconds each turn takes (a slow batch, for the stopping tests)


class ScriptedTestEngine(ScriptedEngine):
    Options = Options

    def __init__(self, model, tokenizer, options):
        titles, delay_s = list(options.titles), options.delay_s

        def script(context, j):
            if delay_s:
                import time

                time.sleep(delay_s)
            k = context.count("scripted step")
            heard = ""
            tail = context.rsplit("</item_list>", 1)[-1] if k else ""  # the last observation
            if "</feedback>" in tail:
                heard = tail.split("<feedback>", 1)[-1].split("</feedback>", 1)[0].strip()
            think = f"<think>scripted step {k}; heard: {heard[:60] or 'nothing'}</think>"
            if k >= len(titles) or "final answer now" in heard:
                return think + f"<answer>{titles[max(k - 1, 0)]}</answer>"
            return think + f"<ground>{titles[k]}</ground>"

        super().__init__(tokenizer, script)
"""


def install_plugin(root: Path) -> Path:
    """Write the plugin (module + dist-info with its entry point) under ``root``; returns the PYTHONPATH entry."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mgfrec_serve_testkit.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    info = root / "mgfrec_serve_testkit-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mgfrec-serve-testkit\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[mgfrec.rollout_engine]\n{ENGINE_NAME} = mgfrec_serve_testkit:ScriptedTestEngine\n", encoding="utf-8"
    )
    return root


def hf_copy(run: Path, dest: Path) -> Path:
    """A copy of the agent run whose config names the built-in ``hf`` engine instead of the plugin's (for an
    app served in this process, whose registry has no plugin: the run's config is checked against it)."""
    import shutil

    import yaml

    copy = shutil.copytree(run, dest)
    config = yaml.safe_load((copy / "config.yaml").read_text(encoding="utf-8"))
    config["rollout"].update(engine="hf", options={})
    (copy / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return copy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(plugin: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TERM="dumb", **extra)
    return env


def mgfrec_command() -> list[str]:
    """The installed console script beside this interpreter (the real command), else ``python -m``."""
    script = Path(sys.executable).with_name("mgfrec")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mgfrec.cli.main"]


class ServerProcess:
    """``mgfrec serve RUN`` as a subprocess on a free port of 127.0.0.1; its output is kept in ``log``."""

    def __init__(
        self, run: Path, plugin: Path, *args: str, env: dict[str, str] | None = None, ignore_sigint: bool = False
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [*mgfrec_command(), "serve", str(run), "--port", str(self.port), *args]
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None  # a shell's `&`
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env or subprocess_env(plugin),
            preexec_fn=ignore,  # noqa: PLW1509 - only sets one signal's disposition
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, limit_s: float = 300) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mgfrec serve exited with {self.proc.returncode}:\n{self.log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"mgfrec serve did not answer within {limit_s} s:\n{self.log}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)


class ThreadServer:
    """A FastAPI app served by uvicorn in a thread of the test process, on a free port of 127.0.0.1."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn stopped before it started")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def read_events(client: httpx.Client, url: str, on_event=None) -> list[dict]:
    """Read a server-sent event stream to its ``done`` or ``error`` event; ``on_event(event)`` sees each one."""
    import json

    events: list[dict] = []
    with client.stream("GET", url, timeout=httpx.Timeout(300, connect=10)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                event = json.loads(line[len("data: ") :])
                assert event["type"] == kind
                events.append(event)
                if on_event is not None:
                    on_event(event)
                if kind in ("done", "error"):
                    break
    return events
