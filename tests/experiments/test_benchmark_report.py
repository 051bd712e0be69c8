"""The generated benchmark README: rows from results files, and the committed README is current."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_report", ROOT / "experiments" / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def test_rows_from_a_report_list_a_reader_and_the_generic_fallback(tmp_path):
    rows = [{"case": "a", "target": "<= 1", "measured": 0.5, "met": True}]
    (tmp_path / "new_bench.json").write_text(json.dumps({"report": rows}))
    (tmp_path / "odd.json").write_text(
        json.dumps({"parts": {"x": {"target": "fast", "meets_target": False}, "y": {"meets_target": {"p": True}}}})
    )
    # a layout the rve_solver reader does not understand falls back to the flags it holds
    (tmp_path / "rve_solver.json").write_text(json.dumps({"cases": {"c": {"meets_target": {"all": True}}}}))
    assert report.rows_for(tmp_path / "new_bench.json") == (rows, "report")
    generic, how = report.rows_for(tmp_path / "odd.json")
    assert how == "generic"
    assert {(r["case"], r["target"], r["met"]) for r in generic} == {
        ("parts/x/meets_target", "fast", False),
        ("parts/y/meets_target/p", None, True),
    }
    assert report.rows_for(tmp_path / "rve_solver.json")[1] == "generic"
    text = report.render(tmp_path)
    assert "| `new_bench.json` | a | <= 1 | 0.5 | yes |" in text
    assert "| `odd.json` | parts/x/meets_target | fast |  | **no** |" in text


def test_committed_readme_is_generated_from_the_committed_results():
    assert report.main(["--check"]) == 0


def test_every_committed_target_has_a_row_with_its_measurement():
    """Each `meets_target` flag of the committed results has its own row: the campaigns'
    chaos target had none, the 3D FE² files fell back to one generic row without their
    speed-ups, and the campaigns' rows had no measured value."""
    results = ROOT / "experiments" / "benchmarks" / "results"
    camp = json.loads((results / "campaigns.json").read_text())
    rows = {r["case"]: r for r in report.rows_campaigns(camp)}
    for part in ("overhead", "parallel", "asktell", "chaos"):
        assert rows[part]["met"] == camp[part]["meets_target"] and rows[part]["measured"], part
    for f in ("fe2_3d.json", "fe2_3d_box422.json"):
        d = json.loads((results / f).read_text())
        got, how = report.rows_for(results / f)
        assert how == "reader" and {r["case"]: r["met"] for r in got} == d["targets"], f
        assert all(r["measured"] is not None for r in got)
    # a gp_throughput row is met exactly when its slowest batch size reaches the target
    for r in json.loads((results / "gp_throughput.json").read_text())["report"]:
        slowest = float(r["measured"].split()[0])
        assert r["met"] == (slowest >= 1e5), r


def test_uq_and_fe2_rows_state_their_numbers_with_units():
    """uq.json had one generic row of three booleans and no measurement; the FE² error rows
    printed fractions under targets written in per cent (9.33e-05 under "0.5pct")."""
    d = json.loads((ROOT / "experiments" / "benchmarks" / "results" / "uq.json").read_text())
    rows, how = report.rows_for(ROOT / "experiments" / "benchmarks" / "results" / "uq.json")
    assert how == "reader" and [r["met"] for r in rows] == [d["targets"][k] for k in d["targets"]]
    assert f"{d['cost']['ratio']:.3g}x" == rows[2]["measured"]
    for r in d["propagation_by_training_size"]:
        assert f"{r['n_train']}: {r['epistemic']:.3g}" in rows[1]["measured"]
    f = json.loads((ROOT / "experiments" / "benchmarks" / "results" / "fe2.json").read_text())
    (err,) = [r for r in report.rows_fe2(f) if r["case"] == "adaptive_reaction_error_0.5pct"]
    assert err["measured"] == f"{100 * f['adaptive']['reaction_rel_error']:.3g} %" and "0.5 %" in err["target"]
