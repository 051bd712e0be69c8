"""``scalebridge run CONFIG``, ``scalebridge resume RUN``, ``scalebridge status RUN``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any


def register(subparsers, name: str) -> None:
    if name == "run":
        p = subparsers.add_parser("run", help="run a campaign from a TOML config")
        p.add_argument("config", help="TOML campaign config")
        p.add_argument("--run-dir", default=None, help="run directory (default: <run_dir>/<name>-<time>)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=cmd_run)
    elif name == "resume":
        p = subparsers.add_parser("resume", help="resume a killed campaign")
        p.add_argument("run", help="run directory of the campaign")
        p.add_argument("--no-progress", action="store_true")
        p.set_defaults(func=cmd_resume)
    elif name == "status":
        p = subparsers.add_parser("status", help="progress table of a campaign")
        p.add_argument("run", help="run directory of the campaign")
        p.set_defaults(func=cmd_status)
    else:
        raise ValueError(f"loops.commands has no command {name!r}")


def closing_lines(res) -> list[str]:
    """What a finished campaign says: how it stopped, and in optimize mode the recommendation (the
    model's best point at the target fidelity; with a noisy oracle the best observation is the
    luckiest draw, not the best point). Shared by ``scalebridge run`` and the experiment scripts."""
    st = res.state
    lines = [f"stopped by {res.stopped_by}: {st.calls} calls ({st.failed} failed), cost {st.cost:g}"
             + (f", best observed {st.best:.6g}" if st.best is not None else "")
             + "".join(f", {k} {v:.4g}" for k, v in st.metrics.items())]
    rec = res.recommendation
    if rec is not None:
        x = ", ".join(f"{n} = {v:.6g}" for n, v in zip(res.input_names, rec["x"], strict=False))
        pv, sd = rec.get("predicted_value"), rec.get("predicted_sd")
        pred = "" if pv is None else f" (predicted {pv:.6g}" + (f", sd {sd:.3g})" if sd is not None else ")")
        lines.append(f"recommendation: {x}{pred}")
    return lines


def _report(res) -> None:
    st = res.state
    print(f"run directory: {res.run_dir}")
    if res.stopped_by in ("SIGTERM", "SIGINT"):
        print(f"stopped by {res.stopped_by} after {st.calls} calls; points in flight stay pending: "
              f"`scalebridge resume {res.run_dir}` continues", flush=True)
        return
    for line in closing_lines(res):
        print(line)


def cmd_run(args: argparse.Namespace) -> int:
    from loops.config import ConfigError, load_config

    if Path(args.config).is_dir():
        print(f"{args.config}: is a directory, not a TOML campaign config", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as e:
        for line in e.lines:
            print(line, file=sys.stderr)
        return 2
    from loops.engine import Campaign
    from loops.store import RunDirError

    try:
        camp = Campaign(config, run_dir=args.run_dir, progress=not args.no_progress)
    except RunDirError as e:
        print(f"{e}", file=sys.stderr)
        return 2
    except (ValueError, ImportError) as e:
        print(f"{args.config}: {e}", file=sys.stderr)
        return 2
    print(f"run directory: {camp.run_dir}  (resume with: scalebridge resume {shlex.quote(str(camp.run_dir))})", flush=True)
    return _run(camp)


def run_campaign(camp, again: str) -> tuple[Any, int, str]:
    """``camp.run()`` with library notices in the debug log: ``(result, 0, "")``, or
    ``(None, exit status, one-line message)`` when the executor could not start (2) or the
    run directory could no longer be written (1: a full disk, write access taken away; the
    results stored so far are kept, and ``again`` says how to go on from them)."""
    import sqlite3

    from loops.notices import library_notices_to_debug

    try:
        with library_notices_to_debug():
            return camp.run(), 0, ""
    except RuntimeError as e:  # the executor could not start (e.g. an unreachable Dask scheduler)
        return None, 2, f"{e}"
    except (sqlite3.OperationalError, OSError) as e:
        return None, 1, (f"{camp.run_dir}: the run directory could not be written ({type(e).__name__}: {e}); the "
                         f"results stored so far are kept: free space or restore write access, then {again}")


def _run(camp) -> int:
    """Run, report, and return the exit status (128 + signal number when stopped by a signal)."""
    import signal

    res, status, message = run_campaign(camp, f"`scalebridge resume {shlex.quote(str(camp.run_dir))}`")
    if status:
        print(message, file=sys.stderr)
        return status
    _report(res)
    sys.stdout.flush()
    if res.stopped_by in ("SIGTERM", "SIGINT"):
        return 128 + int(getattr(signal, res.stopped_by))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from loops.engine import Campaign
    from loops.store import RunDirError

    if not (Path(args.run) / "config.json").exists():
        print(f"{args.run}: not a campaign run directory (no config.json)", file=sys.stderr)
        return 2
    try:
        camp = Campaign.resume(args.run, progress=not args.no_progress)
    except (RunDirError, ValueError, ImportError) as e:
        print(f"{args.run}: {e}" if str(args.run) not in str(e) else f"{e}", file=sys.stderr)
        return 2
    return _run(camp)


#: why a run store can hold nothing yet
_STARTING = ("a campaign that is starting writes it within seconds (try again), one that never wrote it "
             "left nothing to show")


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from loops.store import RunDirError, RunStore, read_progress, run_dir_in_use

    f = Path(args.run) / "store.sqlite"
    if not Path(args.run).exists():
        print(f"{args.run}: no such directory", file=sys.stderr)
        return 2
    if not f.exists():
        print(f"{args.run}: not a campaign run directory (no store.sqlite)", file=sys.stderr)
        return 2
    if not f.is_file():
        print(f"{f}: not a run store (a directory, not a file)", file=sys.stderr)
        return 2
    if f.stat().st_size == 0:
        print(f"{f}: the run store is empty: {_STARTING}", file=sys.stderr)
        return 2
    store = None
    try:
        store = RunStore(f, check=True, readonly=True)
        cfg = store.get_meta("config", {})
        rows = store.rows()
        status = store.get_meta("status")
    except Exception as e:  # noqa: BLE001  (a damaged store: one line, not a traceback)
        if store is not None:
            store.close()  # and the copy it may have made to read a read-only store's log
        print(f"{e}" if isinstance(e, RunDirError) else f"{f}: not a readable run store ({type(e).__name__}: {e})",
              file=sys.stderr)
        return 2
    if not cfg and not rows:
        # the store exists, its campaign has not written its config yet (or never will)
        store.close()
        print(f"{f}: the run store holds no campaign yet: {_STARTING}", file=sys.stderr)
        return 2
    if status == "running" and not run_dir_in_use(args.run):
        status = "stopped (driver not running)"
    budget = cfg.get("budget", {})
    # names, reasons and units are text, not rich markup: "[s]" is a style, "[/scratch/...]" a closing tag
    table = Table(title=escape(f"campaign {cfg.get('name')} ({cfg.get('mode')}) - {status}"))
    # pending rows are in flight (running, or queued for a worker) only while a driver runs;
    # otherwise they wait for `resume`
    waiting = "in flight" if status == "running" else "pending"
    for col in ("role", "fidelity", "done", "failed", waiting, "cancelled", "cost", "mean time [s]"):
        table.add_column(escape(col), justify="right")
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["role"], r["fidelity"]), []).append(r)
    for (role, fid), rs in sorted(groups.items()):
        fin = [r for r in rs if r["status"] != "pending"]
        wt = [r["wall_time"] for r in fin if r["wall_time"] is not None]
        table.add_row(escape(str(role)), str(fid), str(sum(r["status"] == "done" for r in rs)),
                      str(sum(r["status"] == "failed" for r in rs)), str(sum(r["status"] == "pending" for r in rs)),
                      str(sum(r["status"] == "cancelled" for r in rs)),
                      f"{sum(r['cost'] or 0 for r in fin):g}", f"{sum(wt) / len(wt):.3g}" if wt else "-")
    con = Console()
    con.print(table)
    n_fin = sum(r["status"] != "pending" for r in rows)
    recorded = read_progress(args.run).get("finished", 0)
    if n_fin < recorded:
        # as a resume would refuse it: the store lost rows (its write-ahead log, store.sqlite-wal)
        con.print(f"[bold red]the store holds {n_fin} finished evaluations but progress.json records {recorded}: "
                  "it lost its write-ahead log (store.sqlite-wal) or was emptied; restore them before resuming[/]")
    design = [r for r in rows if r["role"] != "validation" and r["status"] in ("done", "failed")]
    if budget.get("calls"):
        con.print(f"calls: {len(design)} / {budget['calls']}")
    if budget.get("cost"):
        con.print(f"cost: {sum(r['cost'] or 0 for r in design):g} / {budget['cost']}")
    if budget.get("wall_time"):
        # the drivers' banked time (a live driver banks it as results arrive)
        con.print(f"wall time: {float(store.get_meta('elapsed', 0.0) or 0.0):.4g} / {budget['wall_time']:g} s"
                  + (" (as of the last result)" if status == "running" else ""))
    val = [r for r in rows if r["role"] == "validation" and r["status"] in ("done", "failed")]
    if val:
        con.print(f"validation set (outside the budgets): {len(val)} calls, cost "
                  f"{sum(r['cost'] or 0 for r in val):g}")
    last: dict[str, float] = {}
    for m in store.metrics():
        last[m["name"]] = m["value"]
    if last:
        con.print("last metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(last.items())))
    reasons: dict[str, int] = {}
    for r in rows:
        if r["status"] == "failed":
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
    for reason, n in ranked[:5]:
        con.print(escape(f"failed x{n}: {reason}"))
    if len(ranked) > 5:  # every failed call is accounted for
        con.print(f"({sum(n for _, n in ranked[5:])} more failed calls, {len(ranked) - 5} other reasons, "
                  "in the run store's evaluations)")
    faults = store.get_meta("model_faults", []) or []
    for f in faults[-5:]:
        con.print(escape(f"model fault ({f['stage']}, {f['model']}, {f['results']} results): {f['reason']}; "
                         f"{f['fallback']}"))
    if len(faults) > 5:
        con.print(f"({len(faults) - 5} earlier model faults in the run store's model_faults)")
    # the campaign's answer, as `scalebridge run` said it when it finished
    rec = store.get_meta("recommendation")
    if rec and rec.get("x") is not None:
        pv, sd = rec.get("predicted_value"), rec.get("predicted_sd")
        pred = "" if pv is None else f" (predicted {pv:.6g}" + (f", sd {sd:.3g})" if sd is not None else ")")
        con.print(escape(f"recommendation at fidelity {rec.get('fidelity')}: x = ["
                         + ", ".join(f"{v:.6g}" for v in rec["x"]) + f"]{pred}"))
    front = store.get_meta("pareto_front")
    if front is not None:
        con.print(f"observed Pareto front: {len(front)} points")
        for pt in front[:10]:
            ys = ", ".join(f"{k} = {v:.6g}" for k, v in pt["y"].items())
            xs = ", ".join(f"{k} = {v:.6g}" for k, v in pt["x"].items())
            con.print(escape(f"  row {pt['id']}: {ys} at {xs}"))
        if len(front) > 10:
            con.print(f"  ({len(front) - 10} more in the run store's pareto_front)")
    if store.get_meta("mlflow_behind"):
        con.print("MLflow is behind the run store; `scalebridge resume` brings it up to date")
    store.close()
    return 0
