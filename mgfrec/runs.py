"""Run folders: what every command that produces a model leaves behind, and how later commands find it.

``RUN/run.json`` says what the run is (``kind``: ``baseline`` or ``agent``; ``model``: the component name;
``data``: the prepared data folder it was trained on, as given and as an absolute path). ``RUN/config.yaml``
is the resolved config. ``mgfrec evaluate`` and ``mgfrec report`` start from here.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mgfrec import __version__

RUN_FILE = "run.json"


@dataclass(frozen=True)
class RunInfo:
    kind: str  # "baseline" | "agent"
    model: str  # registry name (retriever) or "mgfrec"
    data: str  # prepared data folder, absolute
    data_checksum: str
    created: str = ""
    mgfrec_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)


def write_run_info(run_dir: str | Path, info: RunInfo) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = asdict(info)
    payload["created"] = payload["created"] or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    path = run_dir / RUN_FILE
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


def read_run_info(run_dir: str | Path) -> RunInfo:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no {RUN_FILE}); train one with 'mgfrec baseline fit' or 'mgfrec fit'")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        return RunInfo(**payload)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid run file: {exc}") from None
