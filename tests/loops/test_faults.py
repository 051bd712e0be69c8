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
    with pytest.raises(RunDirError, match=r"differs in budget.calls, oracle.name"):
        Campaign(other, run_dir=run)
    # the command line refuses with one line and exit code 2
    (tmp_path / "other.toml").write_text(toml_text('name = "hartmann6"', 6, kind="serial"))
    p = cli("run", str(tmp_path / "other.toml"), "--run-dir", str(run), "--no-progress", cwd=tmp_path)
    out = p.communicate(timeout=120)[0].decode()
    assert p.returncode == 2, out
    assert "differs in" in out and "oracle.name" in out and "Traceback" not in out
    assert RunStore(run / "store.sqlite").rows() == before
    assert_store_sound(run, 4)


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
