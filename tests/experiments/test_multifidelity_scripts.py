"""The multi-fidelity benchmark scripts: argument checks, merging, and the peers' scoring."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments" / "benchmarks"))
spec = importlib.util.spec_from_file_location("bench_mf", ROOT / "experiments" / "benchmarks" / "multifidelity.py")
mf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mf)


@pytest.mark.parametrize(("argv", "message"), [
    (["--problems", "forrester_nested", "--seeds", "0", "--models", "hf_gp"], "--seeds and --n-test must be >= 1"),
    (["--problems", "forrester_nested", "--n-test", "0", "--models", "hf_gp"], "--seeds and --n-test must be >= 1"),
    (["--problems", "forrester_nested", "--models", "ours_bogus"], "unknown models \\['ours_bogus'\\]"),
    (["--merge", "/nonexistent/a.json"], "--merge: no such files"),
])
def test_bad_arguments_are_one_line_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        mf.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    import re

    assert re.search(message, err), err


def test_merge_refuses_files_of_different_seeds(tmp_path):
    """The merged file holds the first file's seeds: files of other seeds would be mislabelled."""
    rec = json.loads((ROOT / "experiments/benchmarks/results/multifidelity_dev.json").read_text())
    per_seed = rec["results"]["forrester_nested"]["models"]["hf_gp"]["per_seed"]
    for name, seeds in (("a", list(range(10))), ("b", list(range(10, 20)))):
        part = {"command": f"part {name}", "seeds": seeds, "n_test": 1000,
                "results": {"forrester_nested": {"models": {"hf_gp": {"per_seed": per_seed}}}}}
        (tmp_path / f"{name}.json").write_text(json.dumps(part))
    with pytest.raises(SystemExit, match="merge only runs of the same seeds"):
        mf.merge([str(tmp_path / "a.json"), str(tmp_path / "b.json")], str(tmp_path / "m.json"))
    mf.merge([str(tmp_path / "a.json"), str(tmp_path / "a.json")], str(tmp_path / "m.json"))
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["seeds"] == list(range(10))
    assert merged["results"]["forrester_nested"]["models"]["hf_gp"]["per_seed"]["nrmse"] == per_seed["nrmse"]


def test_emukit_ar1_is_scored_on_the_latent_top_level():
    """Emukit's wrapper adds the inferred noise to its variance; the benchmark scores the latent
    top level, as for every other model: the variance it returns is GPy's without the likelihood."""
    pytest.importorskip("emukit")
    import GPy  # noqa: F401

    data = mf.make_data(mf.PROBLEMS["currin_noisy5"], 0, 50)
    old = mf.EMUKIT_RESTARTS
    mf.EMUKIT_RESTARTS = 1
    try:
        from emukit.model_wrappers.gpy_model_wrappers import GPyMultiOutputWrapper

        seen = {}
        real = GPyMultiOutputWrapper.optimize

        def keep(self, *a, **k):
            seen["model"] = self
            return real(self, *a, **k)

        GPyMultiOutputWrapper.optimize = keep
        try:
            mean, var, _ = mf.fit_predict("emukit_ar1", data, True)
        finally:
            GPyMultiOutputWrapper.optimize = real
    finally:
        mf.EMUKIT_RESTARTS = old
    wrapper = seen["model"]
    lo, hi = data[3]
    xt = np.hstack([(data[1] - lo) / (hi - lo), np.ones((len(data[1]), 1))])
    _, noisy = wrapper.predict(xt)
    noise = float(np.asarray(wrapper.gpy_model.mixed_noise.Gaussian_noise_1.variance).ravel()[0])
    np.testing.assert_allclose(var, noisy.reshape(-1) - noise, rtol=1e-6, atol=1e-12)
