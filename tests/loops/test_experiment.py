"""The shared driver of the experiment scripts (``loops/experiment.py``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import loops.engine as engine
from loops.experiment import experiment_parser, run_experiment

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "a_rve_active_learning.toml"


class _Stub:
    """A campaign that records its config and stops as a signal would stop it."""

    seen: list = []

    def __init__(self, config, run_dir=None, progress=True):
        _Stub.seen.append(config)
        self.run_dir = Path(run_dir or "/tmp/stub")
        self.store = SimpleNamespace(set_meta=lambda *a: None)

    def run(self):
        return SimpleNamespace(stopped_by="SIGINT", state=SimpleNamespace(calls=3), run_dir=self.run_dir)


def test_a_smoke_run_registers_under_its_own_name_and_a_signal_ends_in_one_line(monkeypatch, capsys, tmp_path):
    """A smoke run had registered a new latest version of the full-size model's name; a Ctrl-C had
    ended every experiment script in a traceback from its closed store."""
    monkeypatch.setattr(engine, "Campaign", _Stub)
    args = experiment_parser("t").parse_args(["--smoke", "--run-dir", str(tmp_path / "r"), "--no-progress"])
    with pytest.raises(SystemExit) as stop:
        run_experiment(CONFIG, {}, args)
    assert stop.value.code == 130
    cfg = _Stub.seen[-1]
    assert cfg.name.endswith("-smoke")
    assert cfg.tracking.registered_model_name == "rve-fibre-neohookean-P-smoke"
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("stopped by SIGINT after 3 calls; points in flight stay pending") and "resume" in out[-1]
