"""`scalebridge status` against the run store read independently (sqlite3): text that looks like
rich markup, every failed call accounted for, the recommendation and the Pareto front of a
finished campaign, a store without a campaign yet, a WAL store on a read-only file system."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
import torch

from loops.cli import main
from loops.config import parse_config
from loops.engine import Campaign
from oracles.exceptions import CalculationFailed
from oracles.function import FunctionOracle

BOX = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
FAST = {"num_restarts": 2, "raw_samples": 32, "maxiter": 20}


def _rows(run) -> tuple[list[dict], dict]:
    """The store's evaluations and meta, read with sqlite3 alone."""
    con = sqlite3.connect(f"file:{run / 'store.sqlite'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM evaluations ORDER BY id")]
    meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    con.close()
    return rows, meta


def _status(capsys, monkeypatch, run) -> tuple[int, str, str]:
    monkeypatch.setenv("COLUMNS", "250")
    rc = main(["status", str(run)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _campaign(run, fn, name="probe", calls=6, initial=4, acq=None, objective=None, **kw):
    oracle = FunctionOracle(fn, BOX, names=["a", "b"], **kw)
    cfg = parse_config({"name": name, "oracle": oracle, "budget": {"calls": calls}, "initial": {"n": initial},
                        "acquisition": acq or {"name": "sobol"}, "executor": {"kind": "serial"},
                        "tracking": {"enabled": False}, **({"objective": objective} if objective else {})})
    camp = Campaign(cfg, run_dir=run)
    return camp, camp.run()


def _fails_with_markup(x):
    if float(x[0]) > 0.4:
        raise CalculationFailed(f"diverged [s] at step [/scratch/run{int(1000 * float(x[1]))}] [bold]")
    return (x - 0.3).pow(2).sum()


def test_status_prints_names_reasons_and_units_as_text_not_markup(tmp_path, capsys, monkeypatch):
    camp, _ = _campaign(tmp_path / "run", _fails_with_markup, name="odd[s]name", calls=12, initial=6)
    camp.close()
    rc, out, err = _status(capsys, monkeypatch, tmp_path / "run")
    assert rc == 0, err
    rows, _ = _rows(tmp_path / "run")
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) >= 6
    assert "campaign odd[s]name (optimize)" in out
    assert "mean time [s]" in out
    reasons: dict[str, int] = {}
    for r in failed:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    shown = [ln for ln in out.splitlines() if ln.startswith("failed x")]
    assert len(shown) == min(5, len(reasons))
    for ln in shown:
        n, reason = ln.removeprefix("failed x").split(": ", 1)
        assert reasons[reason] == int(n)  # the reason verbatim, brackets and all
    # every failed call accounted for: the reasons not listed are counted
    listed = sum(int(ln.removeprefix("failed x").split(":")[0]) for ln in shown)
    if listed < len(failed):
        assert f"({len(failed) - listed} more failed calls, {len(reasons) - len(shown)} other reasons" in out


def test_status_shows_the_recommendation_and_counts_of_the_store(tmp_path, capsys, monkeypatch):
    camp, res = _campaign(tmp_path / "run", lambda x: (x - 0.3).pow(2).sum(), calls=6, initial=4,
                          acq={"name": "qLogNEI", **FAST})
    camp.close()
    rc, out, err = _status(capsys, monkeypatch, tmp_path / "run")
    assert rc == 0, err
    rows, meta = _rows(tmp_path / "run")
    design = [r for r in rows if r["status"] in ("done", "failed") and r["role"] != "validation"]
    assert f"calls: {len(design)} / 6" in out
    for role in {r["role"] for r in rows}:
        rs = [r for r in rows if r["role"] == role]
        cells = next(ln for ln in out.splitlines() if f" {role} " in ln).strip("│ ").split("│")
        assert [c.strip() for c in cells[2:4]] == [str(sum(r["status"] == s for r in rs)) for s in ("done", "failed")]
        assert float(cells[6]) == pytest.approx(sum(r["cost"] or 0 for r in rs))
    rec = meta["recommendation"]
    assert rec["x"] == pytest.approx(res.recommendation["x"], abs=0)
    line = next(ln for ln in out.splitlines() if ln.startswith("recommendation"))
    xs = [float(v) for v in line.split("[", 1)[1].split("]", 1)[0].split(",")]
    assert xs == pytest.approx(rec["x"], rel=1e-5)
    assert f"predicted {rec['predicted_value']:.6g}" in line


def test_status_lists_the_observed_pareto_front_of_the_store(tmp_path, capsys, monkeypatch):
    def two(x):
        return [float(((x - 0.2) ** 2).sum()), float(((x - 0.8) ** 2).sum())]

    camp, _ = _campaign(tmp_path / "run", two, calls=10, initial=4, outputs=("f", "g"),
                        objective={"outputs": ["f", "g"]})
    camp.close()
    rc, out, err = _status(capsys, monkeypatch, tmp_path / "run")
    assert rc == 0, err
    rows, _ = _rows(tmp_path / "run")
    done = [r for r in rows if r["status"] == "done"]
    ys = [json.loads(r["y"]) for r in done]
    front = sorted(r["id"] for r, y in zip(done, ys, strict=True)
                   if not any(all(a <= b for a, b in zip(z, y, strict=True)) and z != y for z in ys))
    assert f"observed Pareto front: {len(front)} points" in out
    listed = [int(ln.split()[1].rstrip(":")) for ln in out.splitlines() if ln.startswith("  row ")]
    assert sorted(listed) == front[:10]


def test_status_of_a_store_without_a_campaign_yet_is_one_line(tmp_path, capsys, monkeypatch):
    from loops.store import RunStore

    RunStore(tmp_path / "run" / "store.sqlite").close()  # created, no config written yet
    rc, out, err = _status(capsys, monkeypatch, tmp_path / "run")
    assert rc == 2 and out == ""
    assert "holds no campaign yet" in err and len(err.strip().splitlines()) == 1


def test_status_on_a_read_only_file_system_reads_the_write_ahead_log(tmp_path, capsys, monkeypatch):
    """A killed campaign's rows are in store.sqlite-wal; on a read-only file system without the
    -shm file SQLite can only read the store as immutable, which ignores the log: status had
    said "not a campaign run store" (or shown an old state)."""
    import loops.store as store_mod

    camp, _ = _campaign(tmp_path / "run", lambda x: (x - 0.3).pow(2).sum(), calls=5, initial=5)
    ro = tmp_path / "ro"
    ro.mkdir()
    for name in ("store.sqlite", "store.sqlite-wal", "config.json", "progress.json"):
        shutil.copyfile(tmp_path / "run" / name, ro / name)  # as a kill -9 leaves it: the log not checkpointed
    camp.close()
    assert (ro / "store.sqlite-wal").stat().st_size > 0
    rows, _ = _rows(ro)
    for p in ro.glob("store.sqlite-shm"):
        p.unlink()
    wal_before = (ro / "store.sqlite-wal").read_bytes()

    real_connect = sqlite3.connect

    class NoShm:  # what a read-only file system gives a mode=ro connection to a WAL store without -shm
        def execute(self, *a, **k):
            raise sqlite3.OperationalError("unable to open database file")

        def close(self):
            pass

    def connect(database, *a, **k):
        if "mode=ro" in str(database) and str(ro) in str(database):
            return NoShm()
        return real_connect(database, *a, **k)

    monkeypatch.setattr(store_mod.sqlite3, "connect", connect)
    real_access = store_mod.os.access
    monkeypatch.setattr(store_mod.os, "access", lambda p, m: False if str(p) == str(ro) else real_access(p, m))
    rc, out, err = _status(capsys, monkeypatch, ro)
    assert rc == 0, err
    n_done = sum(r["status"] == "done" for r in rows)
    assert n_done == 5
    assert f"calls: {n_done} / 5" in out
    assert (ro / "store.sqlite-wal").read_bytes() == wal_before  # the original untouched


def test_status_of_a_missing_path_says_it_is_missing(tmp_path, capsys, monkeypatch):
    rc, out, err = _status(capsys, monkeypatch, tmp_path / "nope")
    assert rc == 2 and not out and err.strip() == f"{tmp_path / 'nope'}: no such directory"
    (tmp_path / "empty").mkdir()
    rc, out, err = _status(capsys, monkeypatch, tmp_path / "empty")
    assert rc == 2 and "not a campaign run directory (no store.sqlite)" in err


def test_status_shows_the_wall_time_budget_against_the_banked_time(tmp_path, capsys, monkeypatch):
    oracle = FunctionOracle(lambda x: (x - 0.3).pow(2).sum(), BOX, names=["a", "b"])
    cfg = parse_config({"name": "wt", "oracle": oracle, "budget": {"calls": 5, "wall_time": 300},
                        "initial": {"n": 4}, "acquisition": {"name": "sobol"}, "executor": {"kind": "serial"},
                        "tracking": {"enabled": False}})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    camp.run()
    camp.close()
    _, meta = _rows(tmp_path / "run")
    rc, out, err = _status(capsys, monkeypatch, tmp_path / "run")
    assert rc == 0, err
    assert f"wall time: {meta['elapsed']:.4g} / 300 s" in out and 0 < meta["elapsed"] < 300
