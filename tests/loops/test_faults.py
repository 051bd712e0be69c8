"""Fault injection: campaigns that survive their workers, signals, bad numbers and damaged run directories.

Each test asserts the final store with :func:`assert_store_sound`: every
budgeted point recorded once (done or failed, never left pending), failures
with their reasons, no point evaluated twice. Shared fixtures and helpers
live at the top of this file; tests of other areas are appended at its end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loops.config import parse_config
from loops.store import RunDirError, RunStore

ROOT = Path(__file__).resolve().parents[2]
FAST_ACQ = {"num_restarts": 2, "raw_samples": 64, "maxiter": 50}


def make_config(tmp_path: Path, **over):
    """A small campaign config (dict tables are merged into the defaults)."""
    base = {
        "name": "fault",
        "oracle": {"name": "branin"},
        "budget": {"calls": 8},
        "initial": {"n": 4},
        "acquisition": {"name": "sobol", **FAST_ACQ},
        "executor": {"kind": "serial"},
        "tracking": {"enabled": False},
        "run_dir": str(tmp_path / "runs"),
    }
    for k, v in over.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return parse_config(base)


def toml_text(oracle: str, calls: int, workers: int = 2, kind: str = "process", extra: str = "") -> str:
    """A campaign TOML for the command line (``oracle`` is an inline table's body)."""
    return f"""
name = "fault"
oracle = {{{oracle}}}
[budget]
calls = {calls}
[initial]
n = 4
[acquisition]
name = "sobol"
[executor]
kind = "{kind}"
workers = {workers}
{extra}
[tracking]
enabled = false
"""


def cli(*args, cwd: Path) -> subprocess.Popen:
    """``scalebridge ARGS`` in its own session (so a test can end all of it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "loops.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def kill_session(p: subprocess.Popen) -> None:
    """SIGKILL what is left of a session started by :func:`cli`."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_rows(db: Path, p: subprocess.Popen, n: int, limit: float = 240.0) -> None:
    """Wait until the store at ``db`` holds ``n`` finished rows (the process must stay alive)."""
    t0 = time.time()
    while True:
        assert p.poll() is None, p.stdout.read().decode()
        assert time.time() - t0 < limit, "campaign made no progress"
        if db.exists():
            try:
                s = RunStore(db)
                c = s.counts()
                s.close()
                if c["done"] + c["failed"] >= n:
                    return
            except Exception:  # noqa: BLE001  (the store may be mid-creation)
                pass
        time.sleep(0.1)


def worker_pids(driver: int) -> list[int]:
    """Pids of every descendant of ``driver``."""
    try:
        return [c.pid for c in psutil.Process(driver).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_gone(pids: list[int], limit: float = 10.0) -> list[int]:
    """Pids still alive after up to ``limit`` seconds."""
    t0 = time.time()
    while alive(pids) and time.time() - t0 < limit:
        time.sleep(0.1)
    return alive(pids)


def assert_store_sound(run_dir: Path, calls: int) -> list[dict]:
    """Every budgeted point recorded once, failures with reasons, nothing duplicated; returns the rows."""
    s = RunStore(Path(run_dir) / "store.sqlite")
    rows = [r for r in s.rows() if r["role"] != "validation"]
    s.close()
    assert len(rows) == calls, [(r["id"], r["status"], r["reason"]) for r in rows]
    assert all(r["status"] in ("done", "failed") for r in rows), [r["status"] for r in rows]
    for r in rows:
        if r["status"] == "failed":
            assert r["reason"] and r["y"] is None, r
        else:
            assert r["y"] is not None and r["reason"] is None, r
    # one row per (point, attempt); distinct points have distinct inputs
    keys = [(r["point"], r["attempt"]) for r in rows]
    assert len(set(keys)) == len(keys)
    firsts = [tuple(r["x"]) + (r["fidelity"],) for r in rows if r["attempt"] == 0]
    assert len(set(firsts)) == len(firsts)
    return rows


# --------------------------------------------------------------- bad numbers


def test_nan_and_negative_variance_fail_their_points(tmp_path):
    from loops.engine import Campaign
    from loops.fakes import BadVarianceOracle

    spec = {"name": "loops.fakes:BadVarianceOracle", "nan_rate": 0.25, "negative_rate": 0.25, "seed": 1}
    cfg = make_config(tmp_path, oracle=spec, budget={"calls": 12}, initial={"n": 6},
                      acquisition={"name": "qLogNEI", **FAST_ACQ})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    camp.run()
    rows = assert_store_sound(tmp_path / "run", 12)
    ref = BadVarianceOracle(0.25, 0.25, 1)
    import torch

    kinds = [ref.kind(torch.tensor(r["x"], dtype=torch.float64)) for r in rows]
    assert {"nan", "negative", "ok"} <= set(kinds)
    for r, k in zip(rows, kinds, strict=True):
        if k == "nan":
            assert r["status"] == "failed" and r["reason"].startswith("non-finite") and "variance" in r["reason"]
        elif k == "negative":
            assert r["status"] == "failed" and r["reason"].startswith("negative") and "variance" in r["reason"]
        else:
            assert r["status"] == "done" and r["yvar"] == [0.01]
    # the model was fitted on the good points only, and a resume fits again
    X, _, Yvar = Campaign.resume(tmp_path / "run", tracker=None).data()
    assert len(X) == kinds.count("ok") and Yvar is not None and (Yvar > 0).all()
    camp.close()


# ------------------------------------------------------------- run directory


def test_run_into_a_foreign_run_dir_refuses(tmp_path):
    from loops.engine import Campaign

    run = tmp_path / "run"
    Campaign(make_config(tmp_path, budget={"calls": 4}), run_dir=run).run()
    before = RunStore(run / "store.sqlite").rows()
    other = make_config(tmp_path, oracle={"name": "hartmann6"}, budget={"calls": 6})
    with pytest.raises(RunDirError, match=r"differs in oracle.name;"):  # a budget alone may change
        Campaign(other, run_dir=run)
    # the command line refuses with one line and exit code 2
    (tmp_path / "other.toml").write_text(toml_text('name = "hartmann6"', 6, kind="serial"))
    p = cli("run", str(tmp_path / "other.toml"), "--run-dir", str(run), "--no-progress", cwd=tmp_path)
    out = p.communicate(timeout=120)[0].decode()
    assert p.returncode == 2, out
    assert "differs in" in out and "oracle.name" in out and "Traceback" not in out
    assert RunStore(run / "store.sqlite").rows() == before
    assert_store_sound(run, 4)


def test_another_executor_continues_the_campaign_and_becomes_its_executor(tmp_path):
    """Where the points run is not what the campaign is: a run directory left by an unreachable
    scheduler address had refused the corrected config (differs in executor.address), and resume
    could only retry the old address. The new executor continues it and is written to config.json,
    so a later resume uses it."""
    import json

    from loops.engine import Campaign

    run = tmp_path / "run"
    first = Campaign(make_config(tmp_path, budget={"calls": 6},
                                 executor={"kind": "dask", "address": "tcp://127.0.0.1:9"}), run_dir=run)
    with pytest.raises(RuntimeError, match="no Dask scheduler answered"):
        first.run()
    first.close()
    Campaign(make_config(tmp_path, budget={"calls": 6}, executor={"kind": "serial"}), run_dir=run).run()
    assert_store_sound(run, 6)
    assert json.loads((run / "config.json").read_text())["executor"]["kind"] == "serial"
    assert Campaign.resume(run).config.executor.kind == "serial"


def test_a_hand_edited_config_json_is_checked_against_the_store_on_resume(tmp_path):
    """A resume compared config.json only with itself: an edited oracle setting (Branin negated)
    had been taken and results of two oracles fitted together. Now only budget, executor and
    tracking may change on a resume; a raised budget is honoured and recorded (status reads it)."""
    import json

    from loops.engine import Campaign
    from loops.store import RunStore

    run = tmp_path / "run"
    Campaign(make_config(tmp_path, budget={"calls": 6}), run_dir=run).run()
    good = json.loads((run / "config.json").read_text())
    edited = {**good, "oracle": {**good["oracle"], "name": "hartmann6"}}
    (run / "config.json").write_text(json.dumps(edited))
    with pytest.raises(RunDirError, match=r"differs from the config its run store recorded in oracle.name"):
        Campaign.resume(run)
    assert_store_sound(run, 6)
    (run / "config.json").write_text(json.dumps({**good, "budget": {**good["budget"], "calls": 8}}))
    Campaign.resume(run).run()
    assert_store_sound(run, 8)
    s = RunStore(run / "store.sqlite")
    assert s.get_meta("config")["budget"]["calls"] == 8
    s.close()


def test_a_run_dir_that_cannot_be_written_is_one_line_and_keeps_the_results(tmp_path, monkeypatch, capsys):
    """A full disk (SQLite's "database or disk is full" while logging metrics) had ended the
    driver with two chained tracebacks; the results stored so far are kept and a resume finishes."""
    import sqlite3

    from loops import commands
    from loops.engine import Campaign
    from loops.store import RunStore

    camp = Campaign(make_config(tmp_path, budget={"calls": 8}), run_dir=tmp_path / "run")
    n = {"calls": 0}
    real = RunStore.log_metrics

    def full(self, *a, **k):
        n["calls"] += 1
        if n["calls"] > 2:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, *a, **k)

    monkeypatch.setattr(RunStore, "log_metrics", full)
    rc = commands._run(camp)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert "could not be written" in err[0] and "disk is full" in err[0] and "scalebridge resume" in err[0]
    monkeypatch.undo()
    camp.close()
    Campaign.resume(tmp_path / "run").run()
    assert_store_sound(tmp_path / "run", 8)


def test_a_run_dir_from_before_a_new_setting_is_the_same_campaign(tmp_path):
    """config.json written before a setting existed (here fidelity.cost_source) still matches its config."""
    import json

    from loops.engine import Campaign

    run = tmp_path / "run"
    cfg = make_config(tmp_path, budget={"calls": 3})
    Campaign(cfg, run_dir=run).run()
    old = json.loads((run / "config.json").read_text())
    assert old["fidelity"].pop("cost_source") == "recorded"
    (run / "config.json").write_text(json.dumps(old))
    Campaign(make_config(tmp_path, budget={"calls": 3}), run_dir=run).close()
    old["fidelity"]["cost_source"] = "oracle"  # a setting that differs still refuses
    (run / "config.json").write_text(json.dumps(old))
    with pytest.raises(RunDirError, match=r"differs in fidelity.cost_source"):
        Campaign(make_config(tmp_path, budget={"calls": 3}), run_dir=run)


def test_emptied_store_or_lost_wal_refuses_to_resume(tmp_path):
    import shutil

    from loops.engine import Campaign

    run = tmp_path / "run"
    camp = Campaign(make_config(tmp_path, budget={"calls": 5}), run_dir=run)
    camp.run()
    # the driver still holds the store: its rows live in the write-ahead log
    assert (run / "store.sqlite-wal").exists()
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in ("config.json", "progress.json", "store.sqlite"):  # copied without store.sqlite-wal
        shutil.copy(run / f, copy / f)
    camp.close()
    with pytest.raises(RunDirError, match=r"holds 0 finished evaluations but progress.json records 5"):
        Campaign.resume(copy)
    # an emptied store
    for f in run.glob("store.sqlite*"):
        f.unlink()
    RunStore(run / "store.sqlite").close()
    with pytest.raises(RunDirError, match="emptied or lost its write-ahead log"):
        Campaign.resume(run)
    p = cli("resume", str(run), "--no-progress", cwd=tmp_path)
    out = p.communicate(timeout=120)[0].decode()
    assert p.returncode == 2 and "Traceback" not in out and len(out.strip().splitlines()) == 1, out


def test_truncated_config_and_corrupt_store_give_one_line_errors(tmp_path):
    from loops.engine import Campaign

    run = tmp_path / "run"
    Campaign(make_config(tmp_path, budget={"calls": 3}), run_dir=run).run()
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text[: len(text) // 2])
    with pytest.raises(RunDirError, match=r"config.json: not a valid campaign config \(truncated or not JSON\)"):
        Campaign.resume(run)
    (run / "config.json").write_text(text)
    for f in run.glob("store.sqlite*"):
        f.unlink()
    (run / "store.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunDirError, match="not a readable run store"):
        Campaign.resume(run)
    for cmd in ("status", "resume"):
        p = cli(cmd, str(run), cwd=tmp_path)
        out = p.communicate(timeout=120)[0].decode()
        assert p.returncode == 2 and "Traceback" not in out, out
        assert len(out.strip().splitlines()) == 1 and "not a readable run store" in out, out


def test_unreachable_dask_scheduler_is_one_line_and_fast(tmp_path):
    from loops.engine import Campaign

    cfg = make_config(tmp_path, executor={"kind": "dask", "address": "tcp://127.0.0.1:9"})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    with pytest.raises(RuntimeError, match=r"executor.address = 'tcp://127.0.0.1:9': no Dask scheduler answered"):
        camp.run()
    camp.close()


def test_a_tls_address_without_security_settings_is_one_line(tmp_path):
    """distributed raises a TypeError deep inside for tls:// without an SSL context; it had
    reached the user as a traceback."""
    from loops.engine import Campaign

    cfg = make_config(tmp_path, executor={"kind": "dask", "address": "tls://127.0.0.1:9"})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    with pytest.raises(RuntimeError, match=r"executor.address = 'tls://127.0.0.1:9': distributed cannot connect"):
        camp.run()
    camp.close()


# ---------------------------------------------------------------- worker faults


def _killer(kills: list, limit: int):
    """A callback that SIGKILLs a busy worker (each point at most once) after model updates."""

    def cb(camp, st):
        busy = [w for w in camp.exec.pool.workers if w.key is not None and w.key not in kills]
        if busy and len(kills) < limit:
            kills.append(busy[0].key)
            os.kill(busy[0].proc.pid, signal.SIGKILL)

    return cb


def test_worker_killed_mid_run_is_retried_then_recorded_as_failed(tmp_path):
    from loops.engine import Campaign

    spec = {"name": "loops.fakes:SlowOracle", "delay": 0.3}
    for retries in (1, 0):
        kills: list = []
        cfg = make_config(tmp_path, name=f"k{retries}", oracle=spec, budget={"calls": 10},
                          executor={"kind": "process", "workers": 2, "retries": retries})
        run = tmp_path / f"run{retries}"
        Campaign(cfg, run_dir=run, callbacks=[_killer(kills, 3)]).run()
        rows = assert_store_sound(run, 10)
        assert len(kills) == 3
        by_id = {r["id"]: r for r in rows}
        got = [(by_id[rid]["status"], by_id[rid]["reason"]) for rid in kills]
        if retries:  # re-run on a fresh worker under its own row id
            assert got == [("done", None)] * 3, (kills, rows)
        else:
            # a worker killed just after it sent its answer has its point recorded done
            assert set(got) <= {("failed", "worker died: signal 9"), ("done", None)}, got
            assert got.count(("failed", "worker died: signal 9")) >= 2, got
        assert sum(r["status"] == "failed" for r in rows) == sum(g[0] == "failed" for g in got)


def test_segfaulting_oracle_fails_its_points_and_the_campaign_goes_on(tmp_path):
    import torch

    from loops.engine import Campaign
    from loops.fakes import SegfaultOracle

    spec = {"name": "loops.fakes:SegfaultOracle", "crash_rate": 0.3, "seed": 2}
    cfg = make_config(tmp_path, oracle=spec, budget={"calls": 12},
                      executor={"kind": "process", "workers": 2, "retries": 1})
    res = Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = assert_store_sound(tmp_path / "run", 12)
    ref = SegfaultOracle(0.3, 2)
    crash = [ref.crashes(torch.tensor(r["x"], dtype=torch.float64)) for r in rows]
    assert 0 < sum(crash) < len(rows)
    for r, c in zip(rows, crash, strict=True):
        if c:
            assert r["status"] == "failed" and r["reason"] == f"worker died: signal {int(signal.SIGSEGV)}", r
        else:
            assert r["status"] == "done", r
    assert res.state.failed == sum(crash)


@pytest.mark.slow
def test_oracle_hanging_with_sigalrm_blocked_is_killed_and_the_cli_exits(tmp_path):
    import torch

    from loops.fakes import HangingOracle

    extra = "timeout = 1.0\nretries = 1"
    (tmp_path / "c.toml").write_text(
        toml_text('name = "loops.fakes:HangingOracle", hang_rate = 0.3, seed = 2, delay = 0.2', 8, extra=extra))
    run = tmp_path / "run"
    p = cli("run", str(tmp_path / "c.toml"), "--run-dir", str(run), "--no-progress", cwd=tmp_path)
    try:
        out = p.communicate(timeout=240)[0].decode()
    finally:
        kill_session(p)
    assert p.returncode == 0, out
    rows = assert_store_sound(run, 8)
    ref = HangingOracle(0.3, 2)
    hang = [ref.hangs(torch.tensor(r["x"], dtype=torch.float64)) for r in rows]
    assert 0 < sum(hang) < len(rows)
    for r, h in zip(rows, hang, strict=True):
        # a hanging point is killed (twice: retries = 1); a point queued behind it is never charged
        assert (r["status"], r["reason"]) == (("failed", "timeout after 1 s (worker killed)") if h else ("done", None))


# ------------------------------------------------------------ driver faults


@pytest.mark.parametrize("second", ["api", pytest.param("cli", marks=pytest.mark.slow)])
def test_two_concurrent_resumes_one_refuses(tmp_path, second):
    from loops.engine import Campaign
    from loops.store import read_lock

    run = tmp_path / "run"
    delay = 1.0 if second == "api" else 4.0  # the second command line needs time to start
    cfg = make_config(tmp_path, oracle={"name": "loops.fakes:SlowOracle", "delay": delay}, budget={"calls": 8},
                      executor={"kind": "process", "workers": 2})
    Campaign(cfg, run_dir=run).close()
    p1 = cli("resume", str(run), "--no-progress", cwd=tmp_path)
    try:
        t0 = time.time()
        while (read_lock(run) or {}).get("pid") != p1.pid:
            assert p1.poll() is None and time.time() - t0 < 120, p1.stdout.read().decode()
            time.sleep(0.05)
        if second == "api":
            with pytest.raises(RunDirError, match=f"in use by process {p1.pid} on host"):
                Campaign.resume(run)
        else:
            p2 = cli("resume", str(run), "--no-progress", cwd=tmp_path)
            out2 = p2.communicate(timeout=120)[0].decode()
            assert p2.returncode == 2 and f"in use by process {p1.pid}" in out2 and "Traceback" not in out2, out2
        assert p1.poll() is None  # the refusal happened while the first one ran
        out1 = p1.communicate(timeout=240)[0].decode()
        assert p1.returncode == 0, out1
    finally:
        kill_session(p1)
    assert_store_sound(run, 8)
    assert read_lock(run) is None  # released when the campaign finished


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_to_the_driver_leaves_no_worker_and_resumes_to_budget(tmp_path, sig):
    (tmp_path / "c.toml").write_text(toml_text('name = "loops.fakes:SlowOracle", delay = 0.5', 12))
    run = tmp_path / "run"
    db = run / "store.sqlite"
    p = cli("run", str(tmp_path / "c.toml"), "--run-dir", str(run), "--no-progress", cwd=tmp_path)
    try:
        wait_rows(db, p, 4)
        pids = worker_pids(p.pid)
        assert len(pids) >= 2
        os.kill(p.pid, sig)
        out = p.communicate(timeout=60)[0].decode()
        assert p.returncode == (128 + sig if sig == signal.SIGTERM else -sig), out
        # no worker outlives its driver, whatever signal ended it
        assert wait_gone(pids, 10.0) == []
    finally:
        kill_session(p)
    st = cli("status", str(run), cwd=tmp_path)
    out = st.communicate(timeout=120)[0].decode()
    assert st.returncode == 0
    assert ("stopped (driver not running)" if sig == signal.SIGKILL else " - stopped") in out, out
    r = cli("resume", str(run), "--no-progress", cwd=tmp_path)
    try:
        out = r.communicate(timeout=300)[0].decode()
    finally:
        kill_session(r)
    assert r.returncode == 0, out
    assert_store_sound(run, 12)
    s = RunStore(db)
    assert s.counts()["pending"] == 0 and s.get_meta("status") == "finished"
    s.close()


# ---------------------------------------------------------------------- Dask


@pytest.mark.slow
def test_dask_lost_worker_task_is_resubmitted(tmp_path):
    """A Dask worker that dies mid-task (os._exit) loses its task to another worker
    (``distributed`` reschedules it): the point is evaluated once, and recorded done."""
    from loops.engine import Campaign

    marker = tmp_path / "died"
    cfg = make_config(tmp_path, oracle={"name": "loops.fakes:DieOnceOracle", "marker": str(marker), "delay": 0.2},
                      budget={"calls": 6}, executor={"kind": "dask", "workers": 2})
    Campaign(cfg, run_dir=tmp_path / "run").run()
    assert marker.exists()  # a worker did die
    rows = assert_store_sound(tmp_path / "run", 6)
    assert all(r["status"] == "done" for r in rows)


@pytest.mark.slow
def test_dask_points_waiting_for_a_worker_are_not_charged_their_wait(tmp_path):
    """One Dask worker, four points of 2 s each submitted together, timeout 3.5 s (plus the 2 s
    grace): the timeout had been counted from submission, so the fourth point (done 8 s after it)
    failed as a timeout while it waited behind the others. The first point's margin (5.5 s for a
    2 s point) allows for a loaded machine."""
    from loops.engine import Campaign

    cfg = make_config(tmp_path, oracle={"name": "loops.fakes:SlowOracle", "delay": 2.0}, budget={"calls": 4},
                      initial={"n": 4}, executor={"kind": "dask", "workers": 1, "timeout": 3.5})
    Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = assert_store_sound(tmp_path / "run", 4)
    assert [r["status"] for r in rows] == ["done"] * 4, [r.get("reason") for r in rows]


@pytest.mark.slow
def test_dask_local_cluster_does_not_outlive_a_killed_driver(tmp_path):
    (tmp_path / "c.toml").write_text(toml_text('name = "loops.fakes:SlowOracle", delay = 0.5', 30, kind="dask"))
    run = tmp_path / "run"
    p = cli("run", str(tmp_path / "c.toml"), "--run-dir", str(run), "--no-progress", cwd=tmp_path)
    try:
        wait_rows(run / "store.sqlite", p, 2)
        pids = worker_pids(p.pid)
        assert len(pids) >= 2
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
        assert wait_gone(pids, 10.0) == []
    finally:
        kill_session(p)


def test_config_naming_a_non_oracle_class_is_refused_and_nothing_runs(tmp_path, capsys):
    """``oracle = {name = "subprocess:Popen", args = [...]}`` in a TOML, or edited into a run's
    config.json before ``resume``, is refused in one line before anything is called."""
    import json

    from loops.cli import main

    marker = tmp_path / "ran"
    evil = {"name": "subprocess:Popen", "args": ["touch", str(marker)]}
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "t"\noracle = {{name = "{evil["name"]}", args = {json.dumps(evil["args"])}}}\n'
                   '[budget]\ncalls = 3\n[executor]\nkind = "serial"\n[tracking]\nenabled = false\n')
    assert main(["run", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an Oracle subclass" in err[0], err
    # a finished run whose config.json is edited before resume
    cfg.write_text('name = "t"\noracle = {name = "branin"}\n[budget]\ncalls = 2\n[initial]\nn = 2\n'
                   '[executor]\nkind = "serial"\n[tracking]\nenabled = false\n')
    run = tmp_path / "run2"
    assert main(["run", str(cfg), "--run-dir", str(run), "--no-progress"]) == 0
    data = json.loads((run / "config.json").read_text())
    data["oracle"], data["budget"]["calls"] = evil, 4
    (run / "config.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an Oracle subclass" in err[0], err
    time.sleep(0.5)
    assert not marker.exists()
    assert len(RunStore(run / "store.sqlite").rows()) == 2


# ------------------------------------------------------------- tracking server down


@pytest.mark.slow
def test_unreachable_tracking_uri_costs_at_most_twice_the_normal_time(tmp_path, monkeypatch):
    """With ``MLFLOW_TRACKING_URI=http://127.0.0.1:9`` (nothing listens) a campaign finishes within
    2x the wall time of the same campaign tracked in the embedded SQLite store, warns once, and
    its store holds every point and every metric for a later catch-up."""
    from loops.engine import Campaign
    from loops.tracking import TrackingWarning

    def run(tag: str) -> float:
        cfg = make_config(tmp_path, name=f"track-{tag}", tracking={"enabled": True},
                          acquisition={"name": "qLogNEI", **FAST_ACQ})
        t0 = time.perf_counter()
        camp = Campaign(cfg, run_dir=tmp_path / tag)
        camp.run()
        camp.close()
        return time.perf_counter() - t0

    normal = run("embedded")  # conftest: MLFLOW_TRACKING_URI is a SQLite store in tmp_path
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.warns(TrackingWarning) as rec:
        down = run("down")
    print(f"campaign with the tracking server down {down:.1f} s, embedded store {normal:.1f} s")
    assert down <= 2.0 * normal, (down, normal)
    assert len([w for w in rec if issubclass(w.category, TrackingWarning)]) == 1
    assert_store_sound(tmp_path / "embedded", 8)
    assert_store_sound(tmp_path / "down", 8)
    s = RunStore(tmp_path / "down" / "store.sqlite")
    try:
        assert s.get_meta("mlflow_behind") is True
        assert s.metrics() and len(s.metrics(unlogged_only=True)) == len(s.metrics())
    finally:
        s.close()


# ------------------------------------------------ faults found by probing as a user


def _hold_lock(run, barrier, q):
    from loops.store import RunLock

    lk = RunLock(run)
    barrier.wait()
    try:
        lk.acquire()
    except RunDirError:
        q.put(("refused", os.getpid()))
        return
    t0 = time.time()
    time.sleep(0.6)
    q.put(("held", os.getpid(), t0, time.time()))
    lk.release()


def test_drivers_racing_for_a_stale_lock_never_both_own_the_run(tmp_path):
    """A lock left by a killed driver (a dead PID in the file) is taken over by exactly one of
    several drivers starting together; the takeover used to delete a winner's fresh lock."""
    import json
    import multiprocessing as mp
    import socket

    ctx = mp.get_context("fork")
    for trial in range(6):
        run = tmp_path / f"r{trial}"
        run.mkdir()
        (run / "lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 4_000_000, "time": 0}))
        barrier, q = ctx.Barrier(4), ctx.Queue()
        ps = [ctx.Process(target=_hold_lock, args=(run, barrier, q)) for _ in range(4)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(30)
        held = sorted((r[2], r[3]) for r in (q.get(timeout=5) for _ in ps) if r[0] == "held")
        assert held, trial
        for (_s0, e0), (s1, _) in zip(held, held[1:], strict=False):
            assert s1 >= e0 - 0.05, (trial, held)  # one owner at a time


def test_a_second_campaign_on_the_same_run_directory_in_one_process_is_refused(tmp_path):
    from loops.engine import Campaign

    cfg = make_config(tmp_path)
    first = Campaign(cfg, run_dir=tmp_path / "run")
    with pytest.raises(RunDirError, match="in use by another campaign of this process"):
        Campaign(cfg, run_dir=tmp_path / "run")
    first.close()
    Campaign(cfg, run_dir=tmp_path / "run").close()  # free again once closed


def test_status_reads_without_writing_and_names_a_foreign_file(tmp_path):
    import sqlite3

    run = tmp_path / "foreign"
    run.mkdir()
    c = sqlite3.connect(run / "store.sqlite")
    c.execute("CREATE TABLE users(name TEXT)")
    c.commit()
    c.close()
    before = (run / "store.sqlite").read_bytes()
    p = cli("status", str(run), cwd=tmp_path)
    out = p.communicate(timeout=120)[0].decode()
    assert p.returncode == 2 and "not a campaign run store" in out and "Traceback" not in out, out
    assert (run / "store.sqlite").read_bytes() == before and not (run / "store.sqlite-wal").exists()


def test_status_says_when_the_store_lost_rows_that_progress_records(tmp_path, capsys):
    """A store that lost finished rows (its write-ahead log) had been shown without a word,
    while a resume refuses it."""
    import json
    import types

    from loops.commands import cmd_status
    from loops.engine import Campaign

    run = tmp_path / "run"
    Campaign(make_config(tmp_path, budget={"calls": 4}), run_dir=run).run()
    prog = json.loads((run / "progress.json").read_text())
    (run / "progress.json").write_text(json.dumps({**prog, "finished": prog["finished"] + 3}))
    assert cmd_status(types.SimpleNamespace(run=str(run))) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "the store holds 4 finished evaluations but progress.json records 7" in out, out


def _exits(x):
    if x[0] > 0.5:
        sys.exit(3)
    return [float(x[0] + x[1])]


@pytest.mark.parametrize("kind", ["serial", "thread"])
def test_oracle_calling_sys_exit_fails_its_point_in_process(tmp_path, kind):
    """sys.exit() inside an in-process oracle had ended the driver silently (thread results lost)."""
    import torch

    from loops.engine import Campaign
    from oracles import FunctionOracle

    o = FunctionOracle(_exits, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64), names=["a", "b"])
    cfg = make_config(tmp_path, oracle=o, budget={"calls": 6}, initial={"n": 6},
                      executor={"kind": kind, "workers": 2})
    res = Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    assert len(rows) == 6 and res.state.calls == 6
    for r in rows:
        if r["x"][0] > 0.5:
            assert (r["status"], r["reason"]) == ("failed", "the oracle called sys.exit(3)"), r
        else:
            assert r["status"] == "done", r


def _sleeps(x):
    time.sleep(5.0 if x[0] > 0.5 else 0.0)
    return [float(x[0])]


def test_function_oracle_past_its_timeout_is_recorded_as_a_timeout(tmp_path):
    """FunctionOracle records an oracle's exceptions as failures; the timeout's alarm used to be
    caught there too and recorded as 'OracleError: _Timeout: '."""
    import torch

    from loops.engine import Campaign
    from oracles import FunctionOracle

    o = FunctionOracle(_sleeps, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64), names=["a", "b"])
    cfg = make_config(tmp_path, oracle=o, budget={"calls": 4}, initial={"n": 4},
                      executor={"kind": "serial", "timeout": 0.5})
    Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    slow = [r for r in rows if r["x"][0] > 0.5]
    assert slow and all(r["reason"] == "timeout after 0.5 s" for r in slow), rows


def test_unpicklable_metadata_keeps_the_process_workers_result(tmp_path):
    """A result whose metadata holds a lock came back from a worker as 'worker died: exit
    code 1', losing its outputs; the outputs are kept and the value is stored as its repr."""
    from loops.engine import Campaign

    cfg = make_config(tmp_path, oracle={"name": "loops.fakes:LockMetadataOracle"}, budget={"calls": 4},
                      initial={"n": 4}, executor={"kind": "process", "workers": 2})
    Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    assert [r["status"] for r in rows] == ["done"] * 4, rows
    assert all("lock" in str(r["metadata"]["handle"]) for r in rows)


@pytest.mark.parametrize("address, must", [
    ("http://127.0.0.1:8786", "unknown address scheme 'http'"),
    ("not a url", "missing port number"),
])
def test_malformed_dask_address_is_one_line(tmp_path, address, must):
    from loops.executors import check_dask_scheduler

    with pytest.raises(RuntimeError, match=f"executor.address = {address!r} is not a Dask scheduler address.*{must}"):
        check_dask_scheduler(address)


def test_a_live_port_that_is_not_a_dask_scheduler_is_refused_not_waited_on():
    """A server that accepts and never speaks Dask (a dashboard, a web server) had made
    distributed.Client wait forever."""
    import socket
    import threading

    from loops.executors import check_dask_scheduler

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    conns = []
    t = threading.Thread(target=lambda: conns.append(srv.accept()), daemon=True)
    t.start()
    t0 = time.time()
    with pytest.raises(RuntimeError, match="sent no Dask handshake within 1 s"):
        check_dask_scheduler(f"tcp://127.0.0.1:{port}", timeout=1.0)
    assert time.time() - t0 < 5
    srv.close()


def test_driver_killed_while_writing_the_initial_design_resumes_without_duplicates(tmp_path):
    """The design rows are written in one transaction: a driver killed after 3 of them had left
    3 pending rows, and resume wrote the whole design again beside them (evaluated twice)."""
    import json

    run = tmp_path / "run"
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(toml_text('name = "branin"', 8, kind="serial"))
    child = f"""
import os
from loops.config import load_config
from loops.engine import Campaign
from loops.store import RunStore
orig, n = RunStore.add_pending, [0]
def add_pending(self, *a, **k):
    n[0] += 1
    if n[0] == 4:
        os._exit(137)
    return orig(self, *a, **k)
RunStore.add_pending = add_pending
Campaign(load_config({str(cfg_file)!r}), run_dir={str(run)!r}).run()
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    assert subprocess.run([sys.executable, "-c", child], env=env, timeout=120).returncode == 137
    assert RunStore(run / "store.sqlite").rows() == []  # nothing half-written
    p = cli("resume", str(run), "--no-progress", cwd=tmp_path)
    out = p.communicate(timeout=240)[0].decode()
    assert p.returncode == 0, out
    rows = assert_store_sound(run, 8)
    xs = [json.dumps(r["x"]) for r in rows]
    assert len(set(xs)) == len(xs) == 8, xs


def test_dask_scheduler_killed_mid_campaign_leaves_points_pending_and_one_error(tmp_path):
    """Points in flight when the scheduler dies did not fail: they stay pending for a resume
    (they had been recorded as failed 'CancelledError' calls, spending the budget, and the driver
    ended in chained tracebacks)."""
    import socket

    from loops.engine import Campaign
    from loops.executors import ExecutorLost

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dask = str(Path(sys.executable).parent / "dask")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    worker = subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "2", "--nthreads", "1",
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        cfg = make_config(tmp_path, oracle={"name": "loops.fakes:SlowOracle", "delay": 1.0}, budget={"calls": 12},
                          executor={"kind": "dask", "address": f"tcp://127.0.0.1:{port}", "workers": 2})

        def kill_scheduler(camp, st):
            if st.calls >= 3 and sched.poll() is None:
                os.killpg(sched.pid, signal.SIGKILL)

        t0 = time.time()
        while time.time() - t0 < 60:  # the scheduler and its workers come up
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        camp = Campaign(cfg, run_dir=tmp_path / "run", callbacks=[kill_scheduler])
        with pytest.raises(ExecutorLost, match="is gone.*stay pending"):
            camp.run()
    finally:
        kill_session(sched)
        kill_session(worker)
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    assert not [r for r in rows if r["status"] == "failed"], rows
    assert [r for r in rows if r["status"] == "pending"]
    assert RunStore(tmp_path / "run" / "store.sqlite").get_meta("stopped_by") == "executor lost"


@pytest.mark.parametrize("damage, must", [
    ("UPDATE evaluations SET y='[1.0, ' WHERE id=3", "row 3 has a damaged 'y' value"),
    ("INSERT OR REPLACE INTO meta VALUES ('elapsed', 'not json')", "meta value 'elapsed' is damaged"),
])
def test_a_hand_damaged_store_is_named_in_one_line(tmp_path, damage, must):
    import sqlite3

    from loops.engine import Campaign

    run = tmp_path / "run"
    Campaign(make_config(tmp_path, budget={"calls": 5}), run_dir=run).run()
    c = sqlite3.connect(run / "store.sqlite")
    c.execute(damage)
    c.commit()
    c.close()
    for cmd in ("status", "resume"):
        p = cli(cmd, str(run), cwd=tmp_path)
        out = p.communicate(timeout=120)[0].decode()
        if cmd == "status" and "elapsed" in must:
            continue  # status does not read the banked time
        assert p.returncode == 2 and "Traceback" not in out and must in out, (cmd, out)
        assert len(out.strip().splitlines()) == 1, out


def _corner_fails(x):
    if x[0] > 0.95 and x[1] > 0.95:
        raise RuntimeError("the solver does not converge here")
    return [float((1 - x[0]) ** 2 + (1 - x[1]) ** 2)]  # minimized: the optimum is the corner


def test_failed_point_of_a_deterministic_oracle_is_not_asked_again(tmp_path):
    """The optimum lies in a corner where the oracle fails: the acquisition, which learns
    nothing from a failure, had asked for that same corner call after call (6 of 10
    acquisitions in a probe). Failed points are taken as in flight, so none repeats."""
    import json

    import torch

    from loops.engine import Campaign
    from oracles import FunctionOracle

    o = FunctionOracle(_corner_fails, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64),
                       names=["a", "b"], outputs=["f"])
    cfg = make_config(tmp_path, oracle=o, budget={"calls": 12}, initial={"n": 4},
                      acquisition={"name": "qLogNEI", **FAST_ACQ}, executor={"kind": "serial"})
    Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    failed = [json.dumps([round(v, 9) for v in r["x"]]) for r in rows if r["status"] == "failed"]
    assert failed, "the campaign never reached the failing corner"
    assert len(set(failed)) == len(failed), failed


def test_a_config_error_found_when_the_campaign_is_built_leaves_no_run_directory(tmp_path):
    """An unknown output name is found once the oracle is built: the run directory, its
    config.json, an empty store and the lock had been left behind, and resume repeated the error."""
    from loops.engine import Campaign

    run = tmp_path / "new_run"
    with pytest.raises(ValueError, match="nope"):
        Campaign(make_config(tmp_path, outputs=["nope"]), run_dir=run)
    assert not run.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="nope"):
        Campaign(make_config(tmp_path, outputs=["nope"]), run_dir=existing)
    assert (existing / "notes.txt").read_text() == "mine"  # a directory that was there stays
    Campaign(make_config(tmp_path), run_dir=existing).close()  # and can be used (the lock is free)


def test_a_local_cluster_left_without_workers_counts_as_lost(monkeypatch):
    """distributed retires a task whose worker died as KilledWorker and may leave the
    LocalCluster with no worker; the campaign had then waited forever (rows pending,
    no message). The handle asks the cluster for its workers again, and after
    NO_WORKERS_GRACE seconds without any it reports the executor lost, naming why."""
    from types import SimpleNamespace

    import loops.executors as ex

    class Client:
        status = "running"

        def scheduler_info(self):
            return {"workers": {}}

    class Cluster:
        asked = []

        def scale(self, n):
            self.asked.append(n)

    monkeypatch.setattr(ex, "NO_WORKERS_GRACE", 0.05)
    h = ex.ExecutorHandle(SimpleNamespace(kind="dask", workers=2, address=None, cluster=None), executor=object())
    h._owned, h.client, h.cluster = True, Client(), Cluster()
    assert h.lost() is False and Cluster.asked == [2]  # first: start the workers again
    time.sleep(0.1)
    assert h.lost() is True
    # then the cluster is started anew, at most MAX_CLUSTER_RESTARTS times
    built = []
    monkeypatch.setattr(h, "shutdown", lambda: None)
    monkeypatch.setattr(h, "_build", lambda: built.append(1) or object())
    assert all(h.restart_cluster() for _ in range(ex.MAX_CLUSTER_RESTARTS)) and not h.restart_cluster()
    assert len(built) == ex.MAX_CLUSTER_RESTARTS
    assert "the Dask LocalCluster has no worker left" in h.lost_message()
    h.client.scheduler_info = lambda: {"workers": {"w": {}}}
    h._no_workers_since = None
    assert h.lost() is False  # a cluster with workers is not lost


def test_points_in_flight_when_the_cluster_is_started_anew_are_worker_faults():
    """After a LocalCluster restart the points that were running died with the workers: they
    come back from poll() as worker faults (which the engine retries), not as a hang."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    import loops.executors as ex

    class Handle:
        client = object()
        queues, workers = True, 2

        def lost(self):
            return True

        def restart_cluster(self):
            return True

    runner = ex.PointRunner(SimpleNamespace(kind="thread", workers=2), executor=object())
    runner.handle = Handle()
    runner.futures = {Future(): [7, 0.0, None, None], Future(): [8, 0.0, None, None]}
    out = runner.poll(0.1)
    assert sorted(k for k, _ in out) == [7, 8] and not runner.futures
    assert all(r["failed"] and r["infra"] and "started anew" in r["reason"] for _, r in out)
