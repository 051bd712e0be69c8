"""A campaign killed with SIGKILL resumes without losing or repeating a result."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loops.store import RunStore

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
name = "killme"
seed = {seed}
oracle = {{name = "loops.fakes:SlowOracle", delay = 0.3, jitter = 0.4}}
[budget]
calls = 14
[initial]
n = 4
[acquisition]
num_restarts = 2
raw_samples = 64
maxiter = 50
[executor]
kind = "process"
workers = 2
"""


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "loops.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0])
def test_sigkill_then_resume(tmp_path, seed):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(seed=seed))
    run = tmp_path / "run"
    p = _cli("run", str(cfg), "--run-dir", str(run), "--no-progress", cwd=tmp_path)
    db = run / "store.sqlite"
    t0 = time.time()
    try:
        while True:
            assert p.poll() is None, p.stdout.read().decode()
            assert time.time() - t0 < 240, "campaign did not make progress"
            if db.exists():
                s = RunStore(db)
                n = s.counts()["done"]
                s.close()
                if n >= 6:
                    break
            time.sleep(0.1)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        # the pool's worker processes are ours too: end the whole session we started
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    s = RunStore(db)
    before = {r["id"]: r for r in s.rows() if r["status"] != "pending"}
    in_flight = [r["id"] for r in s.rows(status="pending")]
    s.close()
    assert len(before) >= 6
    # the two workers' calls take different times, so one is running when the other's
    # result arrives: the kill finds a point in flight
    assert in_flight

    r = _cli("resume", str(run), "--no-progress", cwd=tmp_path)
    out, _ = r.communicate(timeout=300)
    assert r.returncode == 0, out.decode()

    s = RunStore(db)
    rows = s.rows()
    s.close()
    assert len(rows) == 14 and all(r["status"] == "done" for r in rows)
    # completed evaluations kept as they were, none evaluated again
    after = {r["id"]: r for r in rows}
    for rid, r in before.items():
        assert after[rid]["y"] == r["y"] and after[rid]["finished"] == r["finished"]
    xs = [tuple(r["x"]) for r in rows]
    assert len(set(xs)) == len(xs)
    # in-flight points were re-run under their own ids
    for rid in in_flight:
        assert after[rid]["status"] == "done"


@pytest.mark.slow
def test_dead_worker_point_is_resubmitted(tmp_path):
    from loops.config import parse_config
    from loops.engine import Campaign

    marker = tmp_path / "died"
    cfg = parse_config({
        "name": "die", "oracle": {"name": "loops.fakes:DieOnceOracle", "marker": str(marker), "delay": 0.2},
        "budget": {"calls": 6}, "initial": {"n": 4}, "acquisition": {"name": "sobol"},
        "executor": {"kind": "process", "workers": 2, "retries": 1}, "tracking": {"enabled": False},
        "run_dir": str(tmp_path),
    })
    Campaign(cfg, run_dir=tmp_path / "run").run()
    assert marker.exists()  # a worker process did die
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    # the point is retried on a fresh worker (retries = 1) under its own row id
    assert len(rows) == 6 and all(r["status"] == "done" for r in rows)
    assert {r["attempt"] for r in rows} == {0}


SEGV_CONFIG = """
name = "segv"
seed = 0
oracle = {name = "loops.fakes:SegfaultOracle", crash_rate = 0.25}
[budget]
calls = 8
[initial]
n = 4
[acquisition]
name = "sobol"
[executor]
kind = "serial"
[tracking]
enabled = false
"""


@pytest.mark.slow
def test_oracle_that_crashes_a_serial_driver_does_not_end_every_resume(tmp_path):
    """Under ``executor.kind = "serial"`` a segfaulting oracle kills the driver itself. The point
    in flight is re-run once on resume (the first death may be a user's kill) and recorded as
    failed, with the reason, when the driver dies on it again; the campaign then completes."""
    from loops.fakes import SegfaultOracle

    cfg = tmp_path / "c.toml"
    cfg.write_text(SEGV_CONFIG)
    run = tmp_path / "run"
    codes = []
    for _ in range(12):
        args = ("resume", str(run)) if run.exists() else ("run", str(cfg), "--run-dir", str(run))
        p = _cli(*args, "--no-progress", cwd=tmp_path)
        out, _ = p.communicate(timeout=120)
        codes.append(p.returncode)
        if p.returncode == 0:
            break
        assert p.returncode == -signal.SIGSEGV, out.decode()
    assert codes[-1] == 0, codes
    rows = RunStore(run / "store.sqlite").rows()
    oracle = SegfaultOracle(crash_rate=0.25)
    import torch

    crashing = [r for r in rows if oracle.crashes(torch.tensor(r["x"], dtype=torch.float64))]
    assert crashing and len(rows) == 8
    for r in rows:
        if r in crashing:
            assert r["status"] == "failed" and "died 2 times" in r["reason"] and "serial" in r["reason"]
        else:
            assert r["status"] == "done"
    # each crashing point ended two drivers, no more
    assert codes.count(-signal.SIGSEGV) == 2 * len(crashing)
