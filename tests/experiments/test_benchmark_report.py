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
