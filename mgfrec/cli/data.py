"""``mgfrec data``: prepare a data set with the R2ec protocol, show its statistics, download Amazon 2023."""

from __future__ import annotations

from pathlib import Path

import typer

from mgfrec.cli.common import CONFIG_HELP, SET_HELP, console, out, output_folder, print_error, print_json, run
from mgfrec.cli.flags import load

app = typer.Typer(help="Prepare data sets (R2ec protocol) and inspect them.", no_args_is_help=True)


def _names_source(config: Path | None, sets: list[str]) -> bool:
    """Whether ``--config``'s file or a ``--set`` names ``data.source`` (the default, ``synthetic``, is no choice)."""
    from mgfrec.config.load import ConfigError, read_yaml, sets_field

    if any(sets_field(text, "data.source") for text in sets):
        return True
    try:
        data = read_yaml(config).get("data") if config else None
    except (ConfigError, OSError):
        return False  # named by load() above
    return isinstance(data, dict) and data.get("source") is not None


def _check_option_clash(text: str, key: str, value: object, given: dict, sets: list[str], seed: int | None) -> None:
    """``-o key=value`` refused in one line where another place gives the option another value: an earlier
    ``-o key=...``, ``--set data.options.key=...`` (it won), or, for ``-o seed``, ``--seed`` (the option won
    silently, though --seed is "the seed for synthetic data"). ``key``, ``value``: ``text`` parsed."""
    from mgfrec.cli.flags import ABSENT, RESET, given_by_set
    from mgfrec.config.load import redacted_override

    shown = redacted_override(text)
    if key in given and given[key] != value:
        raise ValueError(f"--option {shown} and an earlier --option give {key} two values; give one of them")
    for other in sets:
        # the option itself, or data.options / data given whole holding it (a mapping merges; an empty one
        # replaces): `--set 'data.options={n_users: 50}'` won over -o n_users=100 without a word (review s40)
        given_there = given_by_set(other, f"data.options.{key}")
        if given_there is RESET:
            raise ValueError(
                f"--set {redacted_override(other)} empties data.options, dropping --option {shown}; give one of them"
            )
        if given_there is not ABSENT and given_there != value:
            raise ValueError(
                f"--option {shown} and --set {redacted_override(other)} give {key} two values; give one of them"
            )
    if key == "seed" and seed is not None and seed != value:
        raise ValueError(f"--option {shown} and --seed {seed} give the seed two values; give one of them")


@app.command()
def prepare(
    source: str | None = typer.Argument(
        None,
        help="A folder (csv or Amazon 2023 files; data.path) or a source name such as 'synthetic' (data.source); "
        "left out, --config's data.path (the paper configs name the folder 'mgfrec data download' fills), or the "
        "data.source that --config or --set names for a source that reads no folder.",
        show_default=False,
    ),
    out_dir: Path = typer.Option(
        ..., "--out", callback=output_folder, help="Folder to write the prepared data set to."
    ),
    source_name: str | None = typer.Option(None, "--source", help="Force the data_source component."),
    option: list[str] = typer.Option([], "--option", "-o", help="Source option key=value (repeatable)."),
    history_length: int | None = typer.Option(None, help="History window (default 20)."),
    subsample_users: int | None = typer.Option(None, help="Keep a seeded subsample of this many users."),
    subsample_samples: int | None = typer.Option(None, help="Keep a seeded subsample of samples per split."),
    seed: int | None = typer.Option(None, help="Seed for subsampling and synthetic data."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count bad rows instead of stopping."),
    allow_empty: bool = typer.Option(
        False, "--allow-empty", help="Write the data set even when it holds 0 samples (an error otherwise)."
    ),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest counts as JSON."),
) -> None:
    """Turn an interaction log into train/valid/test samples (R2ec protocol) in a prepared folder."""
    from mgfrec.config.load import parse_override
    from mgfrec.data.prepared import detect_source, prepare_config

    def go():
        nonlocal source
        flag, hint = "SOURCE", "pass --source NAME"
        if source is None:  # the paper configs name their folder (data.path): "Missing argument 'source'"
            data = load(config, set_, {}).data
            source = data.path
            if source is None and _names_source(config, set_):
                # a source that reads no folder (data.source: synthetic in configs/default.yaml, or --set) was
                # refused as "SOURCE: give a folder ..." (review s36)
                source = data.source
                flag = f"data.source of {config}" if config else "data.source"
            elif source is None:
                raise ValueError(
                    "SOURCE: give a folder to read or a source name such as 'synthetic' (or a --config whose "
                    "data.path names one, or data.source a source that reads no folder)"
                )
            else:  # its errors named a SOURCE the user never gave (review s35)
                flag = f"data.path of {config}" if config else "data.path"
                hint = "download it with 'mgfrec data download', or give SOURCE"
            if data.path is not None and not Path(source).exists():  # the paper recipe before its download
                raise FileNotFoundError(
                    f"{flag} '{source}': no such folder (relative to {Path.cwd()}); download the data into it with "
                    "'mgfrec data download', or give SOURCE"
                )
        if source_name:
            # SOURCE is a folder for the source to read, or the source's own name (synthetic needs no folder)
            from mgfrec.registry import registry

            known = source_name in registry().names("data_source")  # an unknown one is named by load() below
            if known and not Path(source).exists() and source != source_name:
                raise FileNotFoundError(
                    f"SOURCE '{source}' not found: with --source {source_name}, SOURCE is a folder to read or "
                    f"'{source_name}' itself"
                )
            name, path = source_name, source if Path(source).exists() else None
        else:
            name, path = detect_source(source, flag=flag, hint=hint)
        options: dict = {}
        for text in option:
            if "=" not in text or not text.partition("=")[0].strip():
                raise ValueError(f"--option '{text}': must look like key=value (e.g. -o n_users=100)")
            ((key, value),) = parse_override(text).items()
            _check_option_clash(text, key, value, options, set_, seed)
            options[key] = value
        named = [s.partition("=")[0].strip() for s in set_]  # a --set of the source or its options decides itself
        clear = (
            bool(config)
            and not options
            and not any(k in ("data", "data.source", "data.options") or k.startswith("data.options.") for k in named)
        )
        clear = clear and _options_of_another_source(config, name)
        cfg = load(
            config,
            set_,
            {
                "data.source": name,
                "data.path": path,
                "data.options": options or ({} if clear else None),
                "data.history_length": history_length,
                "data.subsample_users": subsample_users,
                "data.subsample_samples": subsample_samples,
                "data.seed": seed,
                "data.skip_bad": skip_bad or None,
            },
        )
        before = _checksum_of(out_dir)
        with console.status(f"preparing {name} -> {out_dir}"):
            ds = prepare_config(cfg, out_dir, allow_empty=allow_empty)
        if before is not None and before != ds.checksum:  # runs made from the earlier one now fail their check
            console.print(
                f"note: {out_dir} held another prepared data set, now replaced: runs made from it are refused by "
                "evaluate, report and --resume (their data set changed); prepare into a new folder to keep both",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        return ds

    ds = run(go)
    sub = ds.manifest.get("subsample_users")
    if as_json:
        print_json(_summary(ds, sub))
        return
    _print_rows(ds.manifest["rows"])
    _print_subsample(sub, ds.manifest.get("subsample_samples"))
    _print_counts(ds.counts, str(out_dir))


def _print_rows(rows: dict) -> None:
    from mgfrec.data.prepared import row_lines  # not at import: mgfrec --help loads no pandas

    for line in row_lines(rows):
        console.print(line, highlight=False)


def _count_cells(counts: dict) -> list[tuple[str, str]]:
    cells = [(key, f"{counts[key]:,}") for key in ("users", "items", "interactions")]
    cells += [(f"samples / {split}", f"{n:,}") for split, n in counts["samples"].items()]
    return [*cells, ("mean history length", f"{counts['mean_history_length']:.2f}")]


def _print_counts(counts: dict, title: str) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key, value in _count_cells(counts):
        table.add_row(key, value)
    out.print(table)


def _check_shown(ds) -> None:
    """What ``data stats`` shows of a manifest is all there (a damaged file is one line naming it)."""
    from mgfrec.data.prepared import MANIFEST, row_lines

    try:
        row_lines(ds.manifest["rows"])
        _count_cells(ds.counts)
        sub = ds.manifest.get("subsample_users")
        if sub is not None:
            _ = sub["users"], sub["interactions_read"], sub["interactions_kept"], sub["interactions_dropped"]
        for counts in (ds.manifest.get("subsample_samples") or {}).values():
            _ = counts["read"], counts["kept"], counts["dropped"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"field {exc} is missing" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{ds.root / MANIFEST}: {what}; prepare the data set again") from None


@app.command()
def stats(
    data: Path = typer.Argument(..., help="A prepared data set folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Users, items, interactions, samples per split and mean history length of a prepared data set."""
    from mgfrec.data.prepared import PreparedDataset

    def opened():
        ds = PreparedDataset(data)
        _ = ds.manifest  # a damaged manifest or file is its own one-line error, not one of the shown fields
        _check_shown(ds)
        return ds

    ds = run(opened)
    counts = ds.counts
    sub = ds.manifest.get("subsample_users")
    if as_json:
        print_json(_summary(ds, sub, counts))
        return
    _print_rows(ds.manifest["rows"])
    _print_subsample(sub, ds.manifest.get("subsample_samples"))
    _print_counts(counts, str(data))


def _print_subsample(sub: dict | None, samples: dict | None = None) -> None:
    """The ``--subsample-users`` step's own line: it drops whole users after the files' rows are counted; and the
    ``--subsample-samples`` step's, which drops samples of each split."""
    if sub:
        console.print(
            f"subsample_users: {sub['users']} users, interactions {sub['interactions_read']} = kept "
            f"{sub['interactions_kept']} + dropped {sub['interactions_dropped']}",
            highlight=False,
        )
    if samples:
        console.print(
            "subsample_samples: "
            + "; ".join(
                f"{name} {c['read']} = kept {c['kept']} + dropped {c['dropped']}" for name, c in samples.items()
            ),
            highlight=False,
        )


@app.command()
def download(
    dataset: str = typer.Argument(..., help="What to download; only 'amazon2023' (Amazon Reviews 2023)."),
    category: str = typer.Option(..., "--category", help="Amazon 2023 category, e.g. CDs_and_Vinyl or Books."),
    out_dir: Path = typer.Option(
        ..., "--out", callback=output_folder, help="Folder for <Category>.jsonl.gz and meta_<Category>.jsonl.gz."
    ),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="Server root holding raw/review_categories/ and raw/meta_categories/ "
        "(default: https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023).",
    ),
    retries: int = typer.Option(2, "--retries", min=0, help="Resume an interrupted transfer this many more times."),
    timeout: float = typer.Option(
        60.0,
        "--timeout",
        min=0.1,
        max=86400.0,  # inf or 1e300 was an OverflowError traceback from the socket (review s39)
        help="Seconds an attempt waits for the server to connect or send the next bytes.",
    ),
) -> None:
    """Fetch the official reviews and meta files of one category (resumable); then run 'mgfrec data prepare'."""
    from urllib.parse import urlsplit

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from mgfrec.cli.common import stopped, user_errors
    from mgfrec.data.download import DEFAULT_BASE_URL, DownloadError, category_files, download_category
    from mgfrec.signals import sigterm_stops

    if dataset != "amazon2023":
        print_error(f"DATASET {dataset!r}: only 'amazon2023' can be downloaded")
        raise typer.Exit(2)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    bar = Progress(*columns, TimeRemainingColumn(), console=console)
    tasks: dict[str, int] = {}

    def end_bar() -> None:
        if tasks and bar.live.is_started:  # a bar stopped empty, or twice, printed a blank line
            bar.stop()

    def show(name: str, done: int, total: int | None) -> None:
        if not tasks:  # the bar starts with the first transfer
            bar.start()
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=done, total=total)

    with sigterm_stops(), user_errors():  # SIGTERM: the transfer so far is kept (resumable), as after Ctrl-C
        try:
            url = base_url or DEFAULT_BASE_URL
            if category_files(category, url):  # (checks the name and URL first: no line for a refused one)
                # a server that accepts and never answers was 3 minutes of silence before "cannot connect" (s39)
                host = urlsplit(url).hostname
                console.print(f"downloading {category} from {host} (--timeout {timeout:g} s)", highlight=False)
            files = download_category(category, out_dir, url, progress=show, retries=retries, timeout_s=timeout)
        except DownloadError as exc:
            end_bar()
            print_error(str(exc))
            raise typer.Exit(2) from None
        except KeyboardInterrupt as stop:
            end_bar()
            stopped(stop)
        finally:
            end_bar()
    for item in files:
        console.print(f"{item.path}: {item.size:,} bytes ({item.status})", highlight=False)
    console.print(f"next: mgfrec data prepare {out_dir} --out <prepared folder>", highlight=False)


def _checksum_of(folder: Path) -> str | None:
    """The checksum of the prepared data set in ``folder``; None if it holds none (or one that cannot be read)."""
    from mgfrec.data.prepared import PreparedDataset

    if not (Path(folder) / "manifest.json").is_file():
        return None
    try:
        return PreparedDataset(folder).checksum
    except (OSError, ValueError, KeyError):
        return None


def _summary(ds, sub, counts=None) -> dict:
    """``data prepare --json`` and ``data stats --json``: one set of keys (prepare's lacked ``source``)."""
    return {
        **(counts if counts is not None else ds.counts),
        "source": ds.manifest["source"].get("name"),
        "rows": ds.manifest["rows"],
        **({"subsample_users": sub} if sub else {}),
        **({"subsample_samples": ds.manifest["subsample_samples"]} if ds.manifest.get("subsample_samples") else {}),
    }


def _options_of_another_source(config: str, name: str) -> bool:
    """Whether to clear ``data.options``: the ``--config`` file names another data source than the one that reads
    SOURCE, with options for it. The paper's ``configs/paper/cds.yaml`` (amazon2023, ``category``) given a csv
    folder failed on an option the user never wrote, naming neither source. A note says what is left unread."""
    from mgfrec.config.load import read_yaml

    written = read_yaml(config).get("data")  # what the file (and its base: parents) writes, not the defaults
    if not isinstance(written, dict) or "source" not in written:
        return False  # options without a source are for whatever source reads SOURCE: kept (a csv delimiter)
    options = written.get("options")
    if written["source"] == name or not isinstance(options, dict) or not options:
        return False  # (options that are no mapping are the config check's to refuse)
    console.print(
        f"note: --config {config} sets data.source {written['source']} with options "
        f"{', '.join(sorted(map(str, options)))}; the data folder is read by the {name} source, so they are not "
        "used",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return True
