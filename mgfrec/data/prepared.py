"""The prepared data set folder that every later stage reads.

Layout (``mgfrec data prepare ... --out DIR``)::

    DIR/items.parquet         item_idx, item_id, title, any extra attribute columns (the catalogue)
    DIR/interactions.parquet  user_id, item_idx, timestamp, rating (the cleaned log)
    DIR/train.parquet         sample_id, user_id, history (list of item_idx), target, timestamp, position
    DIR/valid.parquet, DIR/test.parquet
    DIR/manifest.json         source, parameters, counts, row accounting, sha256 of every file

Later stages refer to items by ``item_idx`` (0..N-1, catalogue order) and never re-read the raw input.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mgfrec import __version__
from mgfrec.config.load import write_resolved
from mgfrec.config.redaction import scrubbed
from mgfrec.config.schema import DataConfig, MGFRecConfig
from mgfrec.data.dataset_folder import MANIFEST, PREVIOUS, check_output_folder, sha256, write_folder
from mgfrec.data.protocol import SPLITS, make_samples, split_samples, subsample_split, subsample_users
from mgfrec.data.raw import INTERACTION_COLUMNS, ITEM_COLUMNS, BadInputError, RawLog, shown
from mgfrec.locks import only_one_in
from mgfrec.registry import Registry, registry, with_registry
from mgfrec.registry.blame import call_component

FORMAT_VERSION = 1


def load_raw(config: DataConfig, reg: Registry | None = None) -> RawLog:
    """Run the configured ``data_source`` component."""
    reg = reg or registry()
    raw_options = dict(config.options)
    # data.seed (--seed) also seeds a source that takes a seed (synthetic), unless data.options.seed is set
    model = getattr(reg.load("data_source", config.source), "Options", None)
    if model is not None and "seed" in getattr(model, "model_fields", {}) and "seed" not in raw_options:
        raw_options["seed"] = config.seed
    source = reg.build("data_source", config.source, raw_options)
    where = f"data_source '{config.source}' ({reg.get('data_source', config.source).origin})"
    load = getattr(source, "load", None)
    if not callable(load):
        raise BadInputError(f"{where}: has no load(path, skip_bad) method; see docs/plugins.md")
    raw = call_component(source, "load", Path(config.path) if config.path else None, config.skip_bad)
    check_raw_log(raw, where)
    return raw


def check_raw_log(raw: Any, where: str) -> None:
    """What every source promises (the csv source checks it row by row; this guards third-party sources):
    a :class:`RawLog` with the item and interaction columns, unique item ids, a title for every item, numeric
    timestamps, and row counts that add up (read = kept + dropped) for every file."""
    if not isinstance(raw, RawLog):
        raise BadInputError(f"{where}: load() returned {type(raw).__name__}, not a RawLog")
    for table, frame, needed in (
        ("item", raw.items, ITEM_COLUMNS),
        ("interaction", raw.interactions, INTERACTION_COLUMNS[:3]),
    ):
        missing = [c for c in needed if c not in getattr(frame, "columns", ())]
        if missing:
            raise BadInputError(f"{where}: the {table} table has no column(s) {', '.join(missing)}")
    ids = raw.items["item_id"].astype(str)
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise BadInputError(
            f"{where}: item_id {shown(repeated.iat[0])} appears {int((ids == repeated.iat[0]).sum())} times in the "
            "item table; item ids must be unique"
        )
    clashes = sorted({str(c) for c in raw.items.columns if c == "item_idx" or list(raw.items.columns).count(c) > 1})
    if clashes:  # named here by the registered source (the later guard could name only what it wrote in RawLog)
        raise BadInputError(
            f"{where}: item table column(s) {', '.join(clashes)} are reserved (item_idx, mgfrec's index) or repeated"
        )
    unknown = ~raw.interactions["item_id"].astype(str).isin(set(ids))
    if unknown.any():
        first = int(np.flatnonzero(unknown.to_numpy())[0])
        raise BadInputError(
            f"{where}: {int(unknown.sum())} interaction(s) name items missing from the item table (the first: "
            f"interaction {first}, item_id {shown(raw.interactions['item_id'].iat[first])}); a source drops and counts "
            "such rows itself (as dropped rows of its ReadReport)"
        )
    titles = raw.items["title"]
    untitled = ~titles.map(lambda t: isinstance(t, str) and bool(t.strip()))
    if untitled.any():
        first = int(np.flatnonzero(untitled.to_numpy())[0])
        raise BadInputError(
            f"{where}: item {shown(ids.iat[first])} has no title (got {shown(titles.iat[first])}); every item "
            "needs a non-empty title"
        )
    stamps = pd.to_numeric(raw.interactions["timestamp"], errors="coerce").astype("float64")
    bad = ~np.isfinite(stamps.to_numpy())
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise BadInputError(
            f"{where}: interaction {first} has timestamp {shown(raw.interactions['timestamp'].iat[first])}; "
            "timestamps must be finite numbers"
        )
    for name, rep in raw.report.files.items():
        if rep.read != rep.kept + rep.dropped_total:
            raise BadInputError(
                f"{where}: {name}: read {rep.read} != kept {rep.kept} + dropped {rep.dropped_total}; a source counts "
                "every row it reads"
            )


def build(raw: RawLog, config: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """The items, the interaction log and the split samples of ``raw`` under ``config``'s protocol."""
    items, log, splits, _ = _build(raw, config)
    return items, log, splits


def _build(
    raw: RawLog, config: DataConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame], dict[str, int] | None]:
    """Raw log -> (catalogue, indexed interactions, splits). Pure: writes nothing."""
    items = raw.items.reset_index(drop=True).copy()
    items["item_id"] = items["item_id"].astype(str)  # ids are strings (a source may hand over numbers)
    clashes = sorted({str(c) for c in items.columns if c == "item_idx" or list(items.columns).count(c) > 1})
    if clashes:  # the csv source names the file and line; this guards third-party sources
        raise BadInputError(
            f"data source {raw.source!r}: item table column(s) {', '.join(clashes)} are reserved or repeated"
        )
    items.insert(0, "item_idx", np.arange(len(items), dtype="int64"))
    index = pd.Series(items["item_idx"].to_numpy(), index=items["item_id"].to_numpy())
    log = raw.interactions
    if config.subsample_users is not None:
        log = subsample_users(log, config.subsample_users, config.seed)
    log = log.assign(item_id=log["item_id"].astype(str))
    missing = ~log["item_id"].isin(index.index)
    if missing.any():  # sources check this per row; this guards third-party sources
        raise BadInputError(
            f"data source {raw.source!r}: {int(missing.sum())} interactions name items missing from the catalogue"
        )
    log = pd.DataFrame(
        {
            "user_id": log["user_id"].astype(str).to_numpy(),
            "item_idx": index.loc[log["item_id"].to_numpy()].to_numpy(),
            "timestamp": log["timestamp"].astype("float64").to_numpy(),
            "rating": log["rating"].astype("float64").to_numpy() if "rating" in log else np.nan,
        }
    )
    samples = make_samples(log, config.history_length)
    splits = split_samples(samples, config.split_ratios)
    before = None  # each split's samples before --subsample-samples, for its accounting
    if config.subsample_samples is not None:
        before = {name: len(df) for name, df in splits.items()}
        splits = {
            name: subsample_split(df, config.subsample_samples, config.seed + i)
            for i, (name, df) in enumerate(splits.items())
        }
    return items, log, splits, before


def detect_source(
    source: str | os.PathLike[str],
    known: Sequence[str] | None = None,
    *,
    flag: str = "SOURCE",
    hint: str = "pass --source NAME",
) -> tuple[str, str | None]:
    """The ``data_source`` name and path for SOURCE: a registered source name (``known``, default: the
    registry's), or a folder whose contents say which source reads it (csv files, Amazon 2023 files). Errors
    name the argument as ``flag`` and end, for a folder of another format, with ``hint``."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{flag}: give a folder (a str or a Path) or a source name, got {type(source).__name__}")
    source = os.fspath(source)  # a Path was "'PosixPath' object has no attribute 'strip'" (review s35)
    known = list(registry().names("data_source") if known is None else known)
    if not source.strip():  # a script's unset variable: "" would read the current folder
        raise ValueError(f"{flag} is empty; give a data source ({', '.join(known)}) or a data folder")
    if source in known and not Path(source).exists():
        return source, None
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{flag} '{source}' is neither a folder nor a data source ({', '.join(known)})")
    if path.is_file():  # "cannot tell its format ... pass --source", then "--source csv": "not a folder" (review s32)
        raise ValueError(
            f"{flag} {path}: a file; give the folder that holds it (a csv folder holds items.csv and "
            "interactions.csv, -o items_file=... / -o interactions_file=... naming them otherwise, the demo's --set "
            "data.options.items_file=...; an amazon2023 folder holds meta_<Category>.jsonl[.gz])"
        )
    if (path / "manifest.json").is_file():
        raise ValueError(
            f"{flag} {path}: a prepared data set (mgfrec data prepare); give the raw folder it was prepared from"
        )
    if (path / "items.csv").is_file() or (path / "interactions.csv").is_file():
        return "csv", str(path)
    if any(path.glob("meta_*.jsonl*")):
        return "amazon2023", str(path)
    raise FileNotFoundError(
        f"{path}: cannot tell its format (no items.csv/interactions.csv, no meta_<Category>.jsonl[.gz]); {hint}"
    )


@with_registry
def prepare_config(
    config: MGFRecConfig, out: str | Path, reg: Registry | None = None, *, allow_empty: bool = False
) -> PreparedDataset:
    """What ``mgfrec data prepare`` does: :func:`prepare` ``config.data`` into ``out`` and write the resolved
    ``config`` beside it (``out/config.yaml``)."""
    ds = prepare(config.data, out, allow_empty=allow_empty)
    write_resolved(config, out)
    return ds


def row_lines(rows: dict) -> list[str]:
    """A manifest's ``rows`` as ``data prepare`` prints them: per file, ``read = kept + dropped`` and the reasons."""
    lines = []
    for name, rep in rows.items():
        line = f"{name}: read {rep['read']} = kept {rep['kept']} + dropped {rep['dropped']}"
        if rep["dropped"]:
            line += " (" + ", ".join(f"{k} {v}" for k, v in rep["dropped_by_reason"].items()) + ")"
        lines.append(line)
    return lines


class EmptyDatasetError(BadInputError):
    """The input yields no sample at all; refused unless ``allow_empty``."""


@with_registry
def prepare(
    config: DataConfig, out: str | Path, reg: Registry | None = None, *, allow_empty: bool = False
) -> PreparedDataset:
    """Read, check, split and write a prepared data set folder; returns it loaded. A result without a single
    sample (header-only files, every row dropped, no user with two interactions) is an
    :class:`EmptyDatasetError` unless ``allow_empty``."""
    if not isinstance(config, DataConfig):  # "synthetic" was "'str' object has no attribute 'options'" (review s35)
        raise TypeError(
            f"config: give a DataConfig (DataConfig(source='synthetic'), or a config's .data), got "
            f"{type(config).__name__}"
        )
    check_output_folder(out)
    raw = load_raw(config)
    items, log, splits, before = _build(raw, config)
    total = sum(len(frame) for frame in splits.values())
    if total == 0 and not allow_empty:
        where = f"{config.path}: " if config.path else f"data source {config.source!r}: "
        raise EmptyDatasetError(
            f"{where}the prepared data set would hold 0 samples ({len(items)} items, {len(log)} interactions "
            f"kept, {int(log['user_id'].nunique()) if len(log) else 0} users; a sample needs a user with at "
            f"least two interactions); nothing written. Pass --allow-empty to write it anyway"
            + "".join(f"; {line}" for line in row_lines(raw.report.to_dict()) if "dropped 0" not in line)
        )  # why every row went (--skip-bad's drops were shown only with --allow-empty --json; review s30)
    out = Path(out)
    files = {"items.parquet": items, "interactions.parquet": log, **{f"{s}.parquet": splits[s] for s in SPLITS}}
    manifest = {
        "format_version": FORMAT_VERSION,
        "mgfrec_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"name": raw.source, "params": scrubbed(raw.params)},  # a source option's token was kept
        "protocol": config.model_dump(mode="json", exclude={"source", "path", "options", "skip_bad"}),
        "counts": _counts(items, log, splits),
        "rows": raw.report.to_dict(),
    }
    if config.subsample_users is not None:  # the rows' accounting ends at the source; this step drops more
        read = len(raw.interactions)
        manifest["subsample_users"] = {
            "users": int(log["user_id"].nunique()),
            "interactions_read": read,
            "interactions_kept": len(log),
            "interactions_dropped": read - len(log),
        }
    if before is not None:  # it drops samples of each split after the rows' accounting: read = kept + dropped too
        manifest["subsample_samples"] = {
            name: {"read": before[name], "kept": len(splits[name]), "dropped": before[name] - len(splits[name])}
            for name in SPLITS
        }
    out.mkdir(parents=True, exist_ok=True)
    with only_one_in(out, "mgfrec data prepare"):  # two at once: one failed, or one replaced the other unseen
        check_output_folder(out)  # again, under the lock: another prepare may have written here since
        write_folder(out, files, manifest)
    return PreparedDataset(out)


def _counts(items: pd.DataFrame, log: pd.DataFrame, splits: dict[str, pd.DataFrame]) -> dict[str, Any]:
    all_samples = pd.concat(list(splits.values()))
    hist_len = all_samples["history"].map(len) if len(all_samples) else pd.Series(dtype=float)
    return {
        "users": int(log["user_id"].nunique()),
        "items": int(len(items)),
        "items_in_log": int(log["item_idx"].nunique()),
        "interactions": int(len(log)),
        "samples": {s: int(len(splits[s])) for s in SPLITS},
        "mean_history_length": float(hist_len.mean()) if len(hist_len) else 0.0,
    }


# What every command reads from a manifest (prepare writes more); each must be there with this type.
_MANIFEST_FIELDS: dict[str, type] = {"source": dict, "counts": dict, "rows": dict, "checksums": dict}
_PROTOCOL_FIELDS = ("history_length", "split_ratios", "subsample_users", "subsample_samples", "seed")
"""The ``data`` fields a manifest's ``protocol`` records."""


@dataclass
class PreparedDataset:
    """A prepared folder, read lazily. Checksums are verified when the manifest is first read."""

    root: Path
    _splits: dict[str, pd.DataFrame] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if (self.root / PREVIOUS / MANIFEST).is_file() and not (self.root / MANIFEST).is_file():
            raise FileNotFoundError(
                f"{self.root}: a 'mgfrec data prepare' into it was killed while moving its files (its earlier data "
                f"set is in {PREVIOUS}); run that data prepare again: it puts the earlier data set back first"
            )
        if not (self.root / MANIFEST).is_file():
            raise FileNotFoundError(
                f"{self.root}: not a prepared data set (no {MANIFEST}); create one with 'mgfrec data prepare'"
            )

    @cached_property
    def manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        again = "prepare the data set again"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable manifest ({exc}); {again}") from None
        if not isinstance(manifest, dict):
            raise ValueError(f"{path}: not a manifest (a JSON {type(manifest).__name__}, not an object); {again}")
        for key, kind in _MANIFEST_FIELDS.items():
            if not isinstance(manifest.get(key), kind):
                got = "missing" if key not in manifest else f"a {type(manifest[key]).__name__}"
                raise ValueError(f"{path}: field '{key}' is {got}, not a {kind.__name__}; {again}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{self.root / MANIFEST}: format_version {manifest.get('format_version')} != {FORMAT_VERSION}"
            )
        for name, digest in manifest["checksums"].items():
            if sha256(self.root / name) != digest:
                raise ValueError(f"{self.root / name}: checksum differs from {MANIFEST}; prepare the data set again")
        return manifest

    @cached_property
    def items(self) -> pd.DataFrame:
        _ = self.manifest
        return pd.read_parquet(self.root / "items.parquet")

    @cached_property
    def interactions(self) -> pd.DataFrame:
        _ = self.manifest
        return pd.read_parquet(self.root / "interactions.parquet")

    def split(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise ValueError(f"unknown split '{name}'; splits are {', '.join(SPLITS)}")
        if name not in self._splits:
            # read once, and checked against the manifest as read: a long-lived reader (`mgfrec serve`) answered
            # from a file replaced after the data set was opened
            path = self.root / f"{name}.parquet"
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != self.manifest["checksums"].get(path.name):
                raise ValueError(
                    f"{path}: changed since the data set was opened (checksum differs from {MANIFEST}); "
                    "prepare the data set again, and restart what reads it"
                )
            frame = pd.read_parquet(io.BytesIO(data))
            frame["history"] = frame["history"].map(lambda h: np.asarray(h, dtype=np.int64))
            self._splits[name] = frame
        return self._splits[name].copy()  # a caller's new or changed columns stay its own

    @property
    def titles(self) -> list[str]:
        return self.items["title"].tolist()

    @property
    def num_items(self) -> int:
        return int(len(self.items))

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest["counts"]

    def recorded_in(self, config: MGFRecConfig) -> MGFRecConfig:
        """``config`` with this data set's own ``data`` section (:meth:`data_config`), as a run of it records it: the
        config's own (defaults, or an unread ``--set data.*``) claimed another data set (review s36)."""
        return config.model_copy(update={"data": self.data_config()})

    def data_config(self) -> DataConfig:
        """The ``data`` section that made this folder, for a run of it to record: a run's ``config.yaml`` held the
        defaults (``source: synthetic``, ``history_length: 20``) or an unread ``--set data.*`` whatever it was
        trained on (reviews s36). The folder's own ``config.yaml`` when mgfrec wrote it (``data prepare``) and it
        names the manifest's source and protocol; else what the manifest records: the source, its path, the
        protocol and the source's options among its recorded parameters (``skip_bad`` is not recorded there)."""
        from mgfrec.config.load import load_config, resolved_by
        from mgfrec.registry import registry

        source, protocol = self.manifest["source"], self.manifest.get("protocol") or {}
        name, params = source.get("name"), dict(source.get("params") or {})
        fields = {k: protocol[k] for k in _PROTOCOL_FIELDS if k in protocol}
        registered = name in registry().names("data_source")
        own = self.root / "config.yaml"
        if own.is_file() and resolved_by(own) == "mgfrec":
            try:
                data = load_config(own).data
            except (OSError, ValueError):
                data = None
            said = data.model_dump(mode="json") if data is not None else {}
            # a plugin's source may write another name into the manifest than the one it is registered under
            same = data is not None and (data.source == name or not registered)
            if same and all(said[k] == v for k, v in fields.items()):
                return data
        try:
            known = getattr(registry().load("data_source", name), "Options", None) if registered else None
            options = {k: v for k, v in params.items() if k in getattr(known, "model_fields", {})}
            return DataConfig(source=name, path=params.get("path"), options=options, **fields)
        except Exception:  # noqa: BLE001 - a plugin broken here, a value of another time: what is sure is recorded
            return DataConfig(source=name, path=params.get("path"), **fields)

    @property
    def checksum(self) -> str:
        """One digest for the whole folder's content (used to key caches and trained models)."""
        joined = "".join(f"{k}:{v};" for k, v in sorted(self.manifest["checksums"].items()))
        return hashlib.sha256(joined.encode()).hexdigest()[:16]
