"""Independent reference numbers: RecBole's SASRec / GRU4Rec / Caser on an mgfrec prepared split.

Runs under a separate virtualenv with RecBole (it does not import mgfrec)::

    python3 -m venv /work/venv-recbole
    /work/venv-recbole/bin/pip install torch==2.13.0          # CPU build; first
    /work/venv-recbole/bin/pip install recbole "numpy<2" "pandas<2.3" "scipy<1.14" "setuptools<70" pyarrow
    /work/venv-recbole/bin/python tools/recbole_reference.py runs/data/cds --name cds \\
        --models SASRec GRU4Rec Caser --out /tmp/recbole-ref/cds.json

What it does:

1. Exports the prepared folder to RecBole *benchmark* atomic files under ``--work/<name>/``:
   ``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter`` with columns ``user_id:token``,
   ``item_id_list:token_seq`` (the sample's history, oldest first) and ``item_id:token`` (the target), one row
   per mgfrec sample, and ``<name>.item`` with every catalogue item. With ``benchmark_filename`` set, RecBole
   skips its own filtering, augmentation and splitting and uses these rows as they are; ``alias_of_item_id:
   [item_id_list]`` makes the history and target share one item vocabulary, and the ``.item`` file puts all N
   catalogue items into it (so RecBole ranks the same N items as mgfrec; token = mgfrec ``item_idx``).
2. Trains each model with RecBole's own Trainer (CE loss over all items, Adam, early stopping on valid
   NDCG@10 by full ranking) and keeps the weights of the best validation epoch.
3. Scores valid and test twice:

   * ``recbole``: RecBole's own evaluator (``trainer.evaluate``). For *sequential* models RecBole's
     full-sort evaluation does NOT remove the user's history items (``FullSortEvalDataLoader`` passes no
     history index when ``MODEL_TYPE == SEQUENTIAL``; only the padding item is masked), and ties are broken
     by ``torch.topk`` order, not pessimistically.
   * ``mgfrec_convention``: the same trained model's full score matrix over the N catalogue items, ranked as
     mgfrec's evaluator does: pessimistic 1-based rank (an item tied with the target counts above it), the
     sample's history items removed from the ranking except the target itself. ``no_exclusion`` is the same
     ranking without removing history items (the ``recbole`` convention with pessimistic ties).

The JSON written to ``--out`` holds, per model and seed, the settings, best epoch, the validation curve,
wall time and every metric (Hit@K, NDCG@K for K in 5, 10, 20). A later run with the same ``--out`` adds its
models and seeds to those there (replacing a model and seed run again); an ``--out`` holding results of another
prepared set is refused, so give each prepared set its own file.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from shared_data import refuse  # noqa: E402 (tools/ is on sys.path)

KS = (5, 10, 20)
SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------------------------------------- results
def earlier_runs(out: Path, prepared: Path) -> list[dict]:
    """The runs ``out`` already holds for ``prepared``; refuses (one line, exit code 2) an ``out`` that is not a
    results file or that holds another prepared set's results, which rewriting it would lose."""
    if not out.exists():
        return []
    try:
        old = json.loads(out.read_text(encoding="utf-8"))
        recorded, runs = old["prepared"], old.get("runs", [])
        if not isinstance(recorded, str) or not isinstance(runs, list):
            raise TypeError("'prepared' is not a path or 'runs' not a list")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        refuse(f"--out {out}: not a results file of this tool ({exc}); give another --out")
    if recorded != str(prepared):
        refuse(
            f"--out {out} holds results on the prepared set {recorded}, not {prepared}; give each prepared set its "
            "own --out"
        )
    return runs


def write_report(out: Path, report: dict) -> None:
    """``report`` into ``out`` whole: through a temporary file beside it, so a run stopped while writing leaves
    the earlier results."""
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.part")
    part.write_text(json.dumps(report, indent=2), encoding="utf-8")
    os.replace(part, out)


# ----------------------------------------------------------------------------------------------- export
def export(prepared: Path, work: Path, name: str) -> dict:
    """Write RecBole benchmark atomic files for ``prepared`` into ``work/name``; returns a summary."""
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    items = pd.read_parquet(prepared / "items.parquet", columns=["item_idx"])
    n_items = len(items)
    if not np.array_equal(items["item_idx"].to_numpy(), np.arange(n_items)):
        raise SystemExit(f"{prepared}: items.parquet item_idx is not 0..N-1 in order")
    with (out / f"{name}.item").open("w", encoding="utf-8") as handle:
        handle.write("item_id:token\n")
        handle.writelines(f"{i}\n" for i in range(n_items))
    users: dict[str, str] = {}  # mgfrec user_id -> a safe token (u0, u1, ...): no tabs or spaces
    summary = {"items": n_items}
    for split in SPLITS:
        df = pd.read_parquet(
            prepared / f"{split}.parquet",
            columns=["sample_id", "user_id", "history", "target"],
        )
        lines = ["user_id:token\titem_id_list:token_seq\titem_id:token\n"]
        for user, hist, target in zip(df["user_id"], df["history"], df["target"], strict=False):
            if len(hist) == 0:
                raise SystemExit(f"{prepared}/{split}.parquet: a sample with an empty history (RecBole cannot use it)")
            token = users.setdefault(str(user), f"u{len(users)}")
            lines.append(f"{token}\t{' '.join(str(int(i)) for i in hist)}\t{int(target)}\n")
        (out / f"{name}.{split}.inter").write_text("".join(lines), encoding="utf-8")
        summary[split] = len(df)
    summary["users"] = len(users)
    return summary


# ------------------------------------------------------------------------------------------ mgfrec ranks
def pessimistic_ranks(
    scores: np.ndarray, targets: np.ndarray, histories: list[np.ndarray], exclude: bool
) -> np.ndarray:
    """1-based rank of targets[b] in scores[b] (higher = better); ties count above the target; optionally
    the sample's distinct history items other than the target are removed from the ranking."""
    rows = np.arange(len(targets))
    target_score = scores[rows, targets]
    ranks = (scores >= target_score[:, None]).sum(axis=1)
    if exclude:
        for b, hist in enumerate(histories):
            hist = np.unique(np.asarray(hist, dtype=np.int64))
            hist = hist[hist != targets[b]]
            ranks[b] -= int((scores[b, hist] >= target_score[b]).sum())
    return ranks


def summarise(ranks: np.ndarray) -> dict[str, float]:
    ranks = ranks.astype(np.float64)
    out: dict[str, float] = {}
    for k in KS:
        out[f"hit@{k}"] = float((ranks <= k).mean())
        out[f"ndcg@{k}"] = float(np.where(ranks <= k, 1.0 / np.log2(1.0 + ranks), 0.0).mean())
    out["ndcg_full"] = float((1.0 / np.log2(1.0 + ranks)).mean())
    out["mean_rank"] = float(ranks.mean())
    return out


# ------------------------------------------------------------------------------------------------ RecBole
MODEL_SETTINGS = {
    # RecBole's defaults for each model (properties/model/*.yaml), with the paper's embedding size 64
    "SASRec": {
        "hidden_size": 64,
        "inner_size": 256,
        "n_layers": 2,
        "n_heads": 2,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "hidden_act": "gelu",
        "loss_type": "CE",
    },
    "GRU4Rec": {
        "embedding_size": 64,
        "hidden_size": 128,
        "num_layers": 1,
        "dropout_prob": 0.3,
        "loss_type": "CE",
    },
    "Caser": {
        "embedding_size": 64,
        "nv": 4,
        "nh": 8,
        "dropout_prob": 0.4,
        "reg_weight": 1e-4,
        "loss_type": "CE",
    },
}


def config_dict(args: argparse.Namespace, model: str, seed: int, max_len: int) -> dict:
    return {
        "data_path": str(args.work),
        "checkpoint_dir": str(args.work / "saved"),
        "benchmark_filename": list(SPLITS),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {
            "inter": ["user_id", "item_id_list", "item_id"],
            "item": ["item_id"],
        },
        "alias_of_item_id": ["item_id_list"],
        "MAX_ITEM_LIST_LENGTH": max_len,
        "train_neg_sample_args": None,  # CE over all items, no sampled negatives
        "eval_args": {
            "split": {"RS": [0.8, 0.1, 0.1]},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "metrics": ["Hit", "NDCG"],
        "topk": list(KS),
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 6,
        "learning_rate": args.lr,
        "weight_decay": 0.0,
        "train_batch_size": args.batch_size,
        "eval_batch_size": 1024,
        "epochs": args.epochs,
        "stopping_step": args.stopping_step,
        "eval_step": 1,
        "seed": seed,
        "reproducibility": True,
        "use_gpu": False,
        "gpu_id": "",
        "show_progress": False,
        "worker": 0,
        **MODEL_SETTINGS[model],
    }


def run_one(args: argparse.Namespace, model_name: str, seed: int, max_len: int, prepared: Path) -> dict:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.interaction import Interaction
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    cfg = config_dict(args, model_name, seed, max_len)
    config = Config(model=model_name, dataset=args.name, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(args.threads)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    n_items = len(pd.read_parquet(prepared / "items.parquet", columns=["item_idx"]))
    if dataset.item_num != n_items + 1:  # + the padding id 0
        raise SystemExit(f"RecBole item vocabulary {dataset.item_num - 1} != catalogue {n_items}")
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    # Keep the best epoch's weights in memory (instead of RecBole's checkpoint file, which torch>=2.6's
    # weights_only torch.load refuses) and record the validation curve.
    best: dict = {}
    curve: list[float] = []

    def save_checkpoint(epoch, verbose=True, **kwargs):
        best["epoch"] = int(epoch)
        best["state"] = copy.deepcopy(trainer.model.state_dict())

    valid_epoch = trainer._valid_epoch

    def recording_valid_epoch(*a, **k):
        score, result = valid_epoch(*a, **k)
        curve.append(float(score))
        return score, result

    trainer._save_checkpoint = save_checkpoint
    trainer._valid_epoch = recording_valid_epoch
    start = time.perf_counter()
    best_valid_score, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False, verbose=True)
    train_s = time.perf_counter() - start
    model.load_state_dict(best["state"])
    model.eval()

    result = {
        "model": model_name,
        "seed": seed,
        "settings": {
            k: cfg[k]
            for k in (
                "learning_rate",
                "train_batch_size",
                "epochs",
                "stopping_step",
                "MAX_ITEM_LIST_LENGTH",
                "weight_decay",
            )
        }
        | MODEL_SETTINGS[model_name],
        "best_epoch": best["epoch"],  # 0-based, as RecBole logs it
        "epochs_run": len(curve),
        "valid_ndcg10_curve": curve,
        "best_valid_ndcg10_recbole": float(best_valid_score),
        "train_wall_s": round(train_s, 1),
        "recbole": {},
        "mgfrec_convention": {},
        "no_exclusion": {},
    }
    for split, data in (("valid", valid_data), ("test", test_data)):
        native = trainer.evaluate(data, load_best_model=False, show_progress=False)
        result["recbole"][split] = {k.lower(): float(v) for k, v in native.items()}

    # Recompute from the full score matrix over the catalogue, in mgfrec item_idx order.
    token_id = dataset.field2token_id["item_id"]
    user_token_id = dataset.field2token_id["user_id"]
    perm = np.array([token_id[str(i)] for i in range(n_items)], dtype=np.int64)
    users: dict[str, str] = {}  # the same u0, u1, ... tokens as export()
    for split in SPLITS:
        for user in pd.read_parquet(prepared / f"{split}.parquet", columns=["user_id"])["user_id"]:
            users.setdefault(str(user), f"u{len(users)}")
    for split in ("valid", "test"):
        df = pd.read_parquet(prepared / f"{split}.parquet", columns=["user_id", "history", "target"])
        histories = [np.asarray(h, dtype=np.int64) for h in df["history"]]
        targets = df["target"].to_numpy(dtype=np.int64)
        scores = np.empty((len(df), n_items), dtype=np.float32)
        with torch.no_grad():
            for lo in range(0, len(df), 1024):
                hi = min(len(df), lo + 1024)
                seq = np.zeros((hi - lo, max_len), dtype=np.int64)  # RecBole: left-aligned, 0-padded
                lengths = np.zeros(hi - lo, dtype=np.int64)
                for r, hist in enumerate(histories[lo:hi]):
                    hist = hist[-max_len:]
                    seq[r, : len(hist)] = perm[hist]
                    lengths[r] = len(hist)
                uids = np.array(
                    [user_token_id[users[str(u)]] for u in df["user_id"].iloc[lo:hi]],
                    dtype=np.int64,
                )
                inter = Interaction(
                    {
                        "user_id": torch.from_numpy(uids),
                        "item_id_list": torch.from_numpy(seq),
                        "item_length": torch.from_numpy(lengths),
                    }
                )
                full = model.full_sort_predict(inter).view(hi - lo, -1).cpu().numpy()
                scores[lo:hi] = full[:, perm]
        for key, exclude in (("mgfrec_convention", True), ("no_exclusion", False)):
            ranks = pessimistic_ranks(scores, targets, histories, exclude)
            result[key][split] = summarise(ranks)
        # samples whose target shares its exact score with another item (where tie handling matters)
        target_score = scores[np.arange(len(targets)), targets]
        ties = int(((scores == target_score[:, None]).sum(axis=1) > 1).sum())
        result.setdefault("samples_with_target_tied", {})[split] = ties
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared", type=Path, help="an mgfrec prepared data set folder")
    parser.add_argument(
        "--name",
        required=True,
        help="RecBole data set name (avoid RecBole's own, e.g. ml-100k)",
    )
    parser.add_argument("--models", nargs="+", default=["SASRec"], choices=sorted(MODEL_SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--stopping-step", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=None, help="default: the prepared history_length")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 is fastest on a shared 2-core box)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/recbole-ref"),
        help="atomic files, logs (cwd)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="JSON results file (appended per run; one prepared set per file)",
    )
    args = parser.parse_args(argv)
    args.prepared = args.prepared.resolve()
    args.work = args.work.resolve()
    args.out = args.out.resolve()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    runs = earlier_runs(args.out, args.prepared)  # before any work: a refused --out costs nothing
    warnings.filterwarnings("ignore", category=FutureWarning)  # RecBole 1.2.1 on pandas 2.2 / torch 2.x
    manifest = json.loads((args.prepared / "manifest.json").read_text(encoding="utf-8"))
    max_len = args.max_len or int(manifest["protocol"]["history_length"])
    summary = export(args.prepared, args.work, args.name)
    print(f"exported {args.prepared} -> {args.work / args.name}: {summary}", flush=True)
    os.chdir(args.work)  # RecBole writes log/ and log_tensorboard/ under the working directory

    import recbole
    import torch

    report = {
        "prepared": str(args.prepared),
        "counts": summary,
        "versions": {
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "python": platform.python_version(),
        },
        "command": " ".join([sys.executable, *sys.argv]),
        "threads": args.threads,
        "runs": runs,
    }
    for model in args.models:
        for seed in args.seeds:
            print(f"=== {model} seed {seed}", flush=True)
            res = run_one(args, model, seed, max_len, args.prepared)
            res["command"] = report["command"]
            report["runs"] = [r for r in report["runs"] if (r["model"], r["seed"]) != (model, seed)] + [res]
            write_report(args.out, report)
            t = res["mgfrec_convention"]["test"]
            print(
                f"{model} seed {seed}: best epoch {res['best_epoch']} of {res['epochs_run']}, "
                f"valid N@10 {res['best_valid_ndcg10_recbole']:.4f}, test (mgfrec conv.) "
                f"H@10 {t['hit@10']:.4f} N@10 {t['ndcg@10']:.4f}; recbole-native test N@10 "
                f"{res['recbole']['test']['ndcg@10']:.4f}; {res['train_wall_s']} s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
