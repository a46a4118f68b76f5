"""``mgfrec.demo_settings``: what binds a demo rerun to the folder it reuses."""

from __future__ import annotations

import pytest
from csvkit import write_cyclic_csv

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare
from mgfrec.demo_settings import check_data_current


@pytest.mark.reliability
def test_a_rerun_is_refused_once_the_files_its_data_set_was_prepared_from_changed(tmp_path):
    """`mgfrec demo --data FOLDER` reused OUT/data whenever it held a manifest: after the CSV files were edited (a
    log cut to a quarter), the rerun reused every stage and reported on data the folder no longer held."""
    src = write_cyclic_csv(tmp_path / "csv")
    data = DataConfig(source="csv", path=str(src))
    out = tmp_path / "demo"
    prepare(data, out / "data")
    check_data_current(out / "data", data, out)  # unchanged: reused, and the scratch copy is gone
    assert sorted(p.name for p in out.iterdir()) == ["data"]
    log = (src / "interactions.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (src / "interactions.csv").write_text("".join(log[:-5]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"no longer reads as when .*data was prepared \(its interactions differ\)"):
        check_data_current(out / "data", data, out)
    (src / "items.csv").unlink()
    with pytest.raises(ValueError, match=r"cannot be prepared again to check") as gone:
        check_data_current(out / "data", data, out)
    assert "give another --out (or delete" in str(gone.value)
    assert sorted(p.name for p in out.iterdir()) == ["data"]
