"""The csv-source folders the tests write: given file contents, or a cyclic log whose next item is the
last one plus one. (A uniquely named module, not ``conftest``, so that any test folder can import it.)"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import PreparedDataset, prepare


def write_csv_folder(folder: Path, items: str, interactions: str) -> Path:
    """A csv-source folder holding ``items.csv`` and ``interactions.csv`` with exactly these texts."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_text(items, encoding="utf-8")
    (folder / "interactions.csv").write_text(interactions, encoding="utf-8")
    return folder


def write_cyclic_csv(
    folder: Path,
    n_items: int = 10,
    n_users: int = 20,
    seq_len: int = 5,
    *,
    title: str = "T{}",
    user: str = "u{}",
    time_step: int = 100,
) -> Path:
    """User u consumes items u, u+1, ... (mod ``n_items``) at times ``t * time_step + u``: every user's last
    step is the latest, so it lands in the test split."""
    items = "item_id,title\n" + "".join(f"i{j},{title.format(j)}\n" for j in range(n_items))
    rows = "".join(
        f"{user.format(u)},i{(u + t) % n_items},{t * time_step + u}\n" for u in range(n_users) for t in range(seq_len)
    )
    return write_csv_folder(folder, items, "user_id,item_id,timestamp\n" + rows)


def cyclic_dataset(
    root: Path, split_ratios: Sequence[float] = (0.5, 0.25, 0.25), out: str = "data", **kwargs
) -> PreparedDataset:
    """:func:`write_cyclic_csv` into ``root/csv``, prepared into ``root/<out>``."""
    src = write_cyclic_csv(root / "csv", **kwargs)
    return prepare(DataConfig(source="csv", path=str(src), split_ratios=tuple(split_ratios)), root / out)
