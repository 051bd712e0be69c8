"""The run store: one SQLite file per campaign, written as results arrive.

Every oracle call is a row of ``evaluations``: it is inserted as ``pending``
when submitted and updated to ``done`` or ``failed`` (with outputs, cost,
reason and timing) in its own committed transaction the moment the result
arrives, before any model is refit. A process killed with SIGKILL therefore
loses nothing but its in-flight calls, which stay ``pending`` and are
resubmitted on resume under the same row id (so no completed call repeats).

SQLite in WAL mode: a committed transaction survives the death of the
process; the file can be read (``scalebridge status``) while a campaign runs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    point INTEGER,              -- retries of one point share it
    attempt INTEGER NOT NULL DEFAULT 0,
    role TEXT NOT NULL,         -- initial | acquisition | validation
    iteration INTEGER NOT NULL, -- model update after which it was proposed
    x TEXT NOT NULL,            -- JSON list of d floats
    fidelity INTEGER NOT NULL,
    status TEXT NOT NULL,       -- pending | done | failed
    y TEXT, yvar TEXT, cost REAL, reason TEXT, wall_time REAL,
    submitted REAL, finished REAL, metadata TEXT,
    prediction TEXT             -- model mean/std at x when it was proposed
);
CREATE INDEX IF NOT EXISTS ev_status ON evaluations(status);
CREATE TABLE IF NOT EXISTS metrics (
    step INTEGER NOT NULL, name TEXT NOT NULL, value REAL, time REAL,
    logged INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (step, name)
);
"""


class RunStore:
    """SQLite store of one campaign.

    Args:
        path: the ``.sqlite`` file (created with its parent directory).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # ----------------------------------------------------------- evaluations
    def add_pending(
        self,
        x: list[float],
        fidelity: int,
        role: str,
        iteration: int,
        point: int | None = None,
        attempt: int = 0,
        prediction: dict[str, Any] | None = None,
    ) -> int:
        """Insert a submitted call; returns its row id."""
        cur = self.conn.execute(
            "INSERT INTO evaluations(point, attempt, role, iteration, x, fidelity, status, submitted, prediction)"
            " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (
                point,
                attempt,
                role,
                iteration,
                json.dumps([float(v) for v in x]),
                int(fidelity),
                time.time(),
                None if prediction is None else json.dumps(prediction),
            ),
        )
        rid = cur.lastrowid
        if point is None:
            self.conn.execute("UPDATE evaluations SET point=? WHERE id=?", (rid, rid))
        return rid

    def record(self, rid: int, rec: dict[str, Any]) -> None:
        """Write the answer of row ``rid`` (a dict from the worker) and commit."""
        failed = bool(rec.get("failed"))
        self.conn.execute(
            "UPDATE evaluations SET status=?, y=?, yvar=?, cost=?, reason=?, wall_time=?,"
            " finished=?, metadata=? WHERE id=?",
            (
                "failed" if failed else "done",
                None if failed else json.dumps(rec["y"]),
                None if rec.get("yvar") is None else json.dumps(rec["yvar"]),
                rec.get("cost"),
                rec.get("reason"),
                rec.get("wall_time"),
                time.time(),
                json.dumps(rec.get("metadata") or {}, default=str),
                rid,
            ),
        )

    def rows(self, status: str | None = None, role: str | None = None) -> list[dict[str, Any]]:
        """Rows as dicts (``x``, ``y``, ``yvar`` decoded), in id order."""
        q, args = "SELECT * FROM evaluations", []
        cond = []
        if status is not None:
            cond.append("status=?")
            args.append(status)
        if role is not None:
            cond.append("role=?")
            args.append(role)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        out = []
        for r in self.conn.execute(q + " ORDER BY id", args):
            d = dict(r)
            for k in ("x", "y", "yvar", "metadata", "prediction"):
                if d[k] is not None:
                    d[k] = json.loads(d[k])
            out.append(d)
        return out

    def row(self, rid: int) -> dict[str, Any]:
        r = self.conn.execute("SELECT * FROM evaluations WHERE id=?", (rid,)).fetchone()
        if r is None:
            raise KeyError(f"no evaluation with id {rid}")
        d = dict(r)
        for k in ("x", "y", "yvar", "metadata", "prediction"):
            if d[k] is not None:
                d[k] = json.loads(d[k])
        return d

    def counts(self) -> dict[str, int]:
        c = {"pending": 0, "done": 0, "failed": 0}
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM evaluations GROUP BY status"):
            c[status] = n
        return c

    def total_cost(self) -> float:
        v = self.conn.execute("SELECT SUM(cost) FROM evaluations WHERE status != 'pending'").fetchone()[0]
        return float(v or 0.0)

    # --------------------------------------------------------------- metrics
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        now = time.time()
        self.conn.executemany(
            "INSERT OR REPLACE INTO metrics(step, name, value, time, logged) VALUES (?, ?, ?, ?, 0)",
            [(step, k, float(v), now) for k, v in metrics.items()],
        )

    def metrics(self, unlogged_only: bool = False) -> list[dict[str, Any]]:
        q = "SELECT * FROM metrics" + (" WHERE logged=0" if unlogged_only else "") + " ORDER BY step, name"
        return [dict(r) for r in self.conn.execute(q)]

    def mark_logged(self, upto_step: int | None = None) -> None:
        if upto_step is None:
            self.conn.execute("UPDATE metrics SET logged=1")
        else:
            self.conn.execute("UPDATE metrics SET logged=1 WHERE step<=?", (upto_step,))
