"""The demo pipeline: data -> item space -> baselines -> one evaluator -> a Table-4-style report.

``mgfrec demo`` runs this on the embedded synthetic data set (or any folder given with ``--data``) so a
newcomer sees the whole idea on a laptop CPU. Each stage is a library call that the CLI commands also use;
this module only strings them together and reuses what an earlier (interrupted) demo already made.

The agent stages (small-policy SFT, GRPO fit, agent evaluation and its ablations) exist as commands but are
not part of this pipeline yet: on a CPU budget the small policy does not yet answer under greedy decoding,
so the demo stops after the baselines and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mgfrec.config.schema import MGFRecConfig
from mgfrec.data.prepared import PreparedDataset, prepare
from mgfrec.embed.cache import cached_item_embeddings
from mgfrec.eval.report import Report, build_report
from mgfrec.retrievers.fit import fit_baseline
from mgfrec.runs import RUN_FILE

DEMO_BASELINES: tuple[str, ...] = ("pop", "last-title", "sasrec", "gru4rec", "caser", "hybrid")
REFERENCE = "last-title"  # the content floor every other method is paired against


@dataclass
class DemoResult:
    out: Path
    report: Report
    written: dict[str, Path]
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    config: MGFRecConfig,
    out: str | Path,
    *,
    baselines: Sequence[str] = DEMO_BASELINES,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Prepare ``config.data`` into ``out/data``, cache the title embeddings, fit each baseline into
    ``out/<name>``, evaluate all on ``config.eval.split`` and write ``out/report_<split>.{md,csv,json}``.

    Finished stages are reused: a prepared folder whose manifest exists, a run folder with ``run.json``.
    """
    out = Path(out)
    seconds: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        value = fn()
        seconds[name] = round(time.perf_counter() - start, 2)
        say(f"[{name}] done in {seconds[name]:.1f} s")
        return value

    data_dir = out / "data"
    if (data_dir / "manifest.json").is_file():
        ds = PreparedDataset(data_dir)
        say(f"[prepare] reusing {data_dir}")
    else:
        ds = stage("prepare", lambda: prepare(config.data, data_dir))
    counts = ds.counts
    say(
        f"[prepare] {counts['users']} users, {counts['items']} items, {counts['interactions']} interactions; "
        f"samples {counts['samples']['train']}/{counts['samples']['valid']}/{counts['samples']['test']}"
    )
    emb = stage("index", lambda: cached_item_embeddings(ds, config.embedding, progress=True))
    say(f"[index] {ds.num_items} titles -> {emb.vectors.shape[1]}-d vectors ({'cache hit' if emb.hit else 'built'})")

    runs = []
    for name in baselines:
        run_dir = out / name
        if (run_dir / RUN_FILE).is_file():
            say(f"[{name}] reusing {run_dir}")
        else:
            update: dict = {"model": name}
            if name == "hybrid" and "sasrec" in baselines:  # blend the SASRec run above; don't train it twice
                update["options"] = {**config.retriever.options, "collaborative": "sasrec",
                                     "collaborative_run": str(out / "sasrec")}
            cfg = config.model_copy(update={"retriever": config.retriever.model_copy(update=update)})
            result = stage(name, lambda cfg=cfg, run_dir=run_dir: fit_baseline(ds, cfg, run_dir))
            say(f"[{name}] valid NDCG@10 {result.valid_ndcg10:.4f}")
        runs.append(run_dir)

    reference = out / REFERENCE if REFERENCE in baselines else None
    report = stage("evaluate", lambda: build_report(runs, config.eval.split, reference, config.eval))
    written = report.write(out)
    return DemoResult(out, report, written, seconds)
