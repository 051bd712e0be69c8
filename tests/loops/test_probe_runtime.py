"""Run-time faults met as a user: a driver killed or stopped at awkward moments, then resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loops.store import RunStore
from tests.loops.test_faults import FAST_ACQ, ROOT, make_config  # noqa: F401  (the child scripts import them from here)


def rows_of(run: Path) -> list[dict]:
    s = RunStore(run / "store.sqlite")
    try:
        return s.rows()
    finally:
        s.close()


FLAKY = {"oracle": {"name": "loops.fakes:FlakyOracle", "fail_rate": 0.5, "seed": 3},
         "budget": {"calls": 10}, "executor": {"kind": "serial", "retries": 1}}


def test_a_driver_killed_between_a_failure_and_its_retry_still_retries_the_point(tmp_path):
    """The failure of a point and its retry's pending row were two commits: a driver killed
    between them left the failure without its retry, and the resumed campaign spent the call
    on a new point instead (rows differed from an uninterrupted run's)."""
    from loops.engine import Campaign

    ref = tmp_path / "ref"
    Campaign(make_config(tmp_path, **FLAKY), run_dir=ref).run()
    want = [(r["point"], r["attempt"], r["x"], r["status"]) for r in rows_of(ref)]
    assert any(a == 1 for _, a, _, _ in want)  # the reference run retried a point

    run = tmp_path / "run"
    child = f"""
import os
from loops.engine import Campaign
from tests.loops.test_probe_runtime import FLAKY, make_config
from pathlib import Path
orig = Campaign._add_pending
def add_pending(self, *a, **k):
    if k.get("attempt", 0) > 0:  # the driver dies as it writes the first retry
        os._exit(137)
    return orig(self, *a, **k)
Campaign._add_pending = add_pending
Campaign(make_config(Path({str(tmp_path)!r}), **FLAKY), run_dir={str(run)!r}).run()
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    assert subprocess.run([sys.executable, "-c", child], env=env, cwd=ROOT, timeout=120).returncode == 137
    Campaign.resume(run).run()
    got = [(r["point"], r["attempt"], r["x"], r["status"]) for r in rows_of(run)]
    assert got == want


def _busy_answered(camp, limit: float = 20.0) -> list:
    """Wait until every busy process worker has sent its answer; returns their row ids."""
    t0 = time.time()
    while time.time() - t0 < limit:
        busy = [w for w in camp.exec.pool.workers if w.key is not None]
        if busy and all(w.conn.poll() for w in busy):
            return [w.key for w in busy]
        time.sleep(0.02)
    raise AssertionError("the workers did not answer")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_slow_update_keeps_the_answers_that_arrived(tmp_path, sig):
    """A campaign stopped (Ctrl-C, a batch system's SIGTERM) while it fitted its model had
    killed the workers with their answers unread in the pipes: results already computed
    stayed pending and were computed again on resume."""
    from loops.engine import Campaign

    cfg = make_config(tmp_path, oracle={"name": "loops.fakes:SlowOracle", "delay": 0.2},
                      budget={"calls": 12}, executor={"kind": "process", "workers": 2})
    seen: dict[str, list] = {}

    def slow_update(camp, st):
        if not seen:
            seen["answered"] = _busy_answered(camp)  # answers arrive while the driver is busy here
            os.kill(os.getpid(), sig)
            time.sleep(0.5)

    res = Campaign(cfg, run_dir=tmp_path / "run", callbacks=[slow_update]).run()
    assert res.stopped_by == signal.Signals(sig).name
    by_id = {r["id"]: r for r in rows_of(tmp_path / "run")}
    assert len(seen["answered"]) == 2
    assert [by_id[k]["status"] for k in seen["answered"]] == ["done", "done"]
    assert res.state.calls == sum(r["status"] == "done" for r in by_id.values())


def test_a_signal_while_results_are_recorded_stops_after_all_of_them_are_stored(tmp_path, monkeypatch):
    """A signal that arrives while a batch of answers is written stops the campaign once the
    whole batch is stored, not between two of its rows (nor inside a row's transaction)."""
    import torch

    from loops.engine import Campaign, CampaignInterrupted

    camp = Campaign(make_config(tmp_path, budget={"calls": 4}), run_dir=tmp_path / "run")
    trial = camp.ask(3)
    real = RunStore.record

    def record(self, rid, rec):
        real(self, rid, rec)
        if rid == trial.ids[0]:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RunStore, "record", record)
    old = camp._install_signal_handlers()
    try:
        with pytest.raises(CampaignInterrupted):
            camp.tell(trial.X, torch.ones(3, 1), ids=trial.ids)
    finally:
        camp._restore_signal_handlers(old)
    camp.close()
    by_id = {r["id"]: r for r in rows_of(tmp_path / "run")}
    assert [by_id[k]["status"] for k in trial.ids] == ["done"] * 3


@pytest.mark.parametrize("budget", [{"calls": 4}, {"calls": 12, "cost": 4.0}])
def test_a_budget_lowered_on_resume_is_not_overrun_by_points_left_pending(tmp_path, budget):
    """A campaign stopped with 6 design points written and 2 answered, resumed with a budget
    of 4: the 4 points left pending had all been evaluated (6 calls against a budget of 4)."""
    import torch

    from loops.engine import Campaign

    run = tmp_path / "run"
    camp = Campaign(make_config(tmp_path, budget={"calls": 12}, initial={"n": 6}), run_dir=run)
    trial = camp.ask(6)
    camp.tell(trial.X[:2], torch.ones(2, 1), ids=trial.ids[:2])
    camp.close()
    res = Campaign(make_config(tmp_path, budget=budget, initial={"n": 6}), run_dir=run).run()
    rows = rows_of(run)
    assert res.state.calls == 4 and res.state.cost == 4.0
    assert [r["status"] for r in rows] == ["done"] * 4 + ["cancelled"] * 2
    assert all("lowered on resume" in r["reason"] for r in rows[4:])
    # a budget raised again goes on with new points, the cancelled ones stay closed
    res = Campaign(make_config(tmp_path, budget={"calls": 6}, initial={"n": 6}), run_dir=run).run()
    assert res.state.calls == 6 and len(rows_of(run)) == 8


def test_a_full_disk_when_the_lock_is_written_is_one_line_and_leaves_no_directory(tmp_path, monkeypatch, capsys):
    """`scalebridge run` or `resume` on a full disk ended in a traceback from the lock file's
    write (OSError: [Errno 28] No space left on device), and left a new run directory behind."""
    import errno

    from loops.cli import main
    from loops.engine import Campaign
    from loops.store import RunDirError

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    run = tmp_path / "new"
    with pytest.raises(RunDirError, match=r"new: cannot write the lock file .*No space left on device"):
        Campaign(make_config(tmp_path), run_dir=run)
    assert not run.exists()
    monkeypatch.undo()
    Campaign(make_config(tmp_path, budget={"calls": 2}, initial={"n": 2}), run_dir=run).run()
    monkeypatch.setattr(os, "write", full)
    capsys.readouterr()
    assert main(["resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    monkeypatch.undo()
    assert not (run / "lock").exists() and len(rows_of(run)) == 2


class _FailingConn:
    """A store connection whose writes fail part-way, as on a full disk: ``execute`` of a statement
    containing ``bad``, and ``executemany`` after its first row."""

    def __init__(self, conn, bad: str | None = None):
        self._conn, self._bad = conn, bad

    def execute(self, sql, *args):
        import sqlite3

        if self._bad is not None and self._bad in sql:
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def executemany(self, sql, rows):
        import sqlite3

        for i, r in enumerate(rows):
            if i == 1:
                raise sqlite3.OperationalError("database or disk is full")
            self._conn.execute(sql, r)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_write_that_fails_part_way_leaves_nothing_half_written(tmp_path):
    """A pending row is an insert and an update (its point id), a step's metrics several rows:
    a write that failed between them (a full disk, a kill) left a row without its point id, or
    a step with some of its metrics, which `status` showed beside the previous step's."""
    import sqlite3

    s = RunStore(tmp_path / "store.sqlite")
    real = s.conn
    s.conn = _FailingConn(real, bad="SET point")
    with pytest.raises(sqlite3.OperationalError):
        s.add_pending([0.5], 0, "initial", 0)
    s.conn = _FailingConn(real)
    with pytest.raises(sqlite3.OperationalError):
        s.log_metrics(1, {"calls": 1.0, "cost": 1.0})
    s.conn = real
    assert s.rows() == [] and s.metrics() == []
    rid = s.add_pending([0.5], 0, "initial", 0)  # the store is usable as before
    assert s.row(rid)["point"] == rid
    s.close()


def test_a_full_disk_while_a_run_directory_is_set_up_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """The store's first writes on a full disk had ended `scalebridge run` in a traceback
    (sqlite3.OperationalError) and left a run directory that a resume could not use."""
    import sqlite3

    from loops.cli import main
    from loops.engine import Campaign
    from loops.store import RunDirError

    def full(self, key, value):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(RunStore, "set_meta", full)
    run = tmp_path / "new"
    with pytest.raises(RunDirError, match=r"new: the run directory could not be written .*disk is full"):
        Campaign(make_config(tmp_path), run_dir=run)
    assert not run.exists()
    (tmp_path / "c.toml").write_text('name = "t"\noracle = {name = "branin"}\n[budget]\ncalls = 2\n[initial]\nn = 2\n'
                                     '[executor]\nkind = "serial"\n[tracking]\nenabled = false\n')
    capsys.readouterr()
    assert main(["run", str(tmp_path / "c.toml"), "--run-dir", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not be written" in err[0], err
    assert not run.exists()


def test_a_full_disk_while_config_json_is_rewritten_keeps_the_old_one(tmp_path, monkeypatch):
    """A resume with a larger budget rewrites config.json; on a full disk the rewrite had left it
    truncated, and every later resume refused the run directory ('not a valid campaign config')."""
    import errno
    import json

    from loops.engine import Campaign
    from loops.store import RunDirError

    run = tmp_path / "run"
    Campaign(make_config(tmp_path, budget={"calls": 3}), run_dir=run).run()
    before = (run / "config.json").read_text()

    def half(self, data, *a, **k):
        with open(self, "w") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", half)
    with pytest.raises(RunDirError, match="could not be written"):
        Campaign(make_config(tmp_path, budget={"calls": 5}), run_dir=run)
    monkeypatch.undo()
    assert (run / "config.json").read_text() == before and json.loads(before)["budget"]["calls"] == 3
    assert not (run / "config.json.tmp").exists()
    assert Campaign.resume(run).run().state.calls == 3


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_run_dir_is_refused_not_taken_as_the_working_directory(tmp_path, empty):
    """``--run-dir "$UNSET"`` gives an empty string, which ``Path`` reads as the working
    directory: the store, config.json and artifacts had gone there beside the user's files."""
    from loops.engine import Campaign
    from loops.store import RunDirError

    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RunDirError, match=r"run_dir = .* is empty; give a directory"):
        Campaign(make_config(tmp_path), run_dir=empty)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
