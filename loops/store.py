"""The run store: one SQLite file per campaign, written as results arrive.

Every oracle call is a row of ``evaluations``: it is inserted as ``pending``
when submitted and updated to ``done`` or ``failed`` (with outputs, cost,
reason and timing) in its own committed transaction the moment the result
arrives, before any model is refit. A process killed with SIGKILL therefore
loses nothing but its in-flight calls, which stay ``pending`` and are
resubmitted on resume under the same row id (so no completed call repeats).

SQLite in WAL mode: a committed transaction survives the death of the
process; the file can be read (``scalebridge status``) while a campaign runs.
A point still running when a campaign stops on a condition is closed as
``cancelled`` (with the reason); one running when the driver dies stays
``pending`` and is resubmitted on resume.

The run directory is guarded by two small files beside the store:
``lock`` (:class:`RunLock`: held with ``flock`` by the driver that owns it, and
naming its host and PID) and
``progress.json`` (:func:`write_progress`: how many finished rows the store
held at its last write), which lets a resume tell an emptied store, or one
copied without its ``-wal`` file, from a new campaign.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
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
    status TEXT NOT NULL,       -- pending | done | failed | cancelled
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


class RunDirError(RuntimeError):
    """A run directory that cannot be used as it is (locked, foreign, damaged); the message is one line."""


class RunStore:
    """SQLite store of one campaign.

    Args:
        path: the ``.sqlite`` file (created with its parent directory).
        check: run SQLite's ``quick_check`` on opening.
        readonly: open an existing store for reading only (``scalebridge
            status``): nothing is created or written, the file may lie on a
            read-only file system, and a file without the store's tables is
            refused.

    Raises:
        RunDirError: the file is not a readable SQLite store or fails the check.
    """

    def __init__(self, path: str | Path, check: bool = False, readonly: bool = False):
        self.path = Path(path)
        try:
            if readonly:
                self.conn = self._connect_readonly()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
            self.conn.row_factory = sqlite3.Row
            if readonly:
                tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if not {"meta", "evaluations"} <= tables:
                    raise RunDirError(f"{self.path}: not a campaign run store (it has no meta and evaluations tables)")
            else:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(SCHEMA)
            if check:
                res = self.conn.execute("PRAGMA quick_check").fetchone()[0]
                if res != "ok":
                    raise sqlite3.DatabaseError(f"integrity check: {res}")
        except sqlite3.DatabaseError as e:
            if getattr(self, "conn", None) is not None:
                self.conn.close()
            self._remove_copy()
            if not readonly and isinstance(e, sqlite3.OperationalError) and any(
                    w in str(e) for w in ("full", "I/O", "readonly", "unable to open")):
                raise RunDirError(f"{self.path}: the run store cannot be written ({e}); free space or restore "
                                  "write access, then try again") from None
            raise RunDirError(f"{self.path}: not a readable run store ({e})") from None

    def _connect_readonly(self) -> sqlite3.Connection:
        """Read-only connection; on a read-only file system, where SQLite cannot
        create the shared-memory file of a WAL store, the file is read as immutable,
        or, where its write-ahead log holds transactions (which an immutable read
        ignores: the store would look empty or out of date), a copy of the store and
        its log in a temporary directory is read."""
        uri = self.path.resolve().as_uri()
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if os.access(self.path.parent, os.W_OK):
                raise
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            has_log = wal.stat().st_size > 0
        except OSError:
            has_log = False
        if not has_log:
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
        import shutil
        import tempfile

        self._copy_dir = tempfile.mkdtemp(prefix="scalebridge-status-")
        copy = Path(self._copy_dir) / self.path.name
        try:
            shutil.copyfile(self.path, copy)
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        except OSError as e:
            self._remove_copy()
            raise sqlite3.OperationalError(f"cannot copy the store and its write-ahead log to read them ({e})") from None
        # a read-write connection to the copy replays the log (the original is not touched)
        return sqlite3.connect(str(copy), isolation_level=None, timeout=30.0)

    def _remove_copy(self) -> None:
        d = getattr(self, "_copy_dir", None)
        if d is not None:
            import shutil

            shutil.rmtree(d, ignore_errors=True)
            self._copy_dir = None

    def close(self) -> None:
        self.conn.close()
        self._remove_copy()

    @contextmanager
    def transaction(self):
        """Commit the writes of the block together, or none of them (the process
        killed, or an exception, inside it)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def _atomic(self):
        """The writes of the block as one (a savepoint: inside a :meth:`transaction` too), so that
        a failed write (a full disk) or a killed process leaves none of them."""
        self.conn.execute("SAVEPOINT atomic")
        try:
            yield
        except BaseException:
            try:
                self.conn.execute("ROLLBACK TO atomic")
                self.conn.execute("RELEASE atomic")
            except sqlite3.Error:  # SQLite rolled the transaction back itself
                pass
            raise
        self.conn.execute("RELEASE atomic")

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except (TypeError, ValueError) as e:
            raise RunDirError(f"{self.path}: meta value {key!r} is damaged ({e}); the store was edited or corrupted") from None

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
        with self._atomic():  # the insert and the point id together
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
        return [self._decode(r) for r in self.conn.execute(q + " ORDER BY id", args)]

    def row(self, rid: int) -> dict[str, Any]:
        r = self.conn.execute("SELECT * FROM evaluations WHERE id=?", (rid,)).fetchone()
        if r is None:
            raise KeyError(f"no evaluation with id {rid}")
        return self._decode(r)

    def cancel(self, rid: int, reason: str) -> None:
        """Close a pending row that will not be evaluated (the campaign stopped on a condition)."""
        self.conn.execute("UPDATE evaluations SET status='cancelled', reason=?, finished=? WHERE id=? AND status='pending'",
                          (reason, time.time(), rid))

    def rows_after(self, rid: int) -> list[dict[str, Any]]:
        """Rows with id > ``rid`` (incremental reads)."""
        return [self._decode(r) for r in self.conn.execute("SELECT * FROM evaluations WHERE id>? ORDER BY id", (rid,))]

    def _decode(self, r) -> dict[str, Any]:
        """A row as a dict, its JSON columns decoded (a damaged one is named with its row)."""
        d = dict(r)
        for k in ("x", "y", "yvar", "metadata", "prediction"):
            if d[k] is not None:
                try:
                    d[k] = json.loads(d[k])
                except (TypeError, ValueError) as e:
                    raise RunDirError(
                        f"{self.path}: row {d.get('id')} has a damaged {k!r} value ({e}); "
                        "the store was edited or corrupted"
                    ) from None
        return d

    def counts(self) -> dict[str, int]:
        c = {"pending": 0, "done": 0, "failed": 0, "cancelled": 0}
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM evaluations GROUP BY status"):
            c[status] = n
        return c

    def total_cost(self) -> float:
        v = self.conn.execute("SELECT SUM(cost) FROM evaluations WHERE status != 'pending'").fetchone()[0]
        return float(v or 0.0)

    # --------------------------------------------------------------- metrics
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        now = time.time()
        with self._atomic():  # a step's metrics all or none (status shows the last step's)
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


# ------------------------------------------------------------- run directory


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def read_lock(run_dir: str | Path) -> dict[str, Any] | None:
    """The lock of a run directory (``{"host", "pid", "time"}``) or None."""
    try:
        return json.loads((Path(run_dir) / "lock").read_text())
    except (OSError, ValueError):
        return None


def lock_is_live(lock: dict[str, Any] | None) -> bool:
    """Whether the lock's driver runs, by its PID (on another host it is assumed
    to); the test of file systems without ``flock`` (see :class:`RunLock`)."""
    if not lock:
        return False
    if lock.get("host") != socket.gethostname():
        return True
    return pid_alive(int(lock.get("pid", -1)))


def _flock(fd: int, shared: bool = False) -> bool | None:
    """Take ``flock`` on ``fd`` without waiting: True taken, False held through
    another open file, None where the file system has no ``flock``."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def run_dir_in_use(run_dir: str | Path) -> bool:
    """Whether a driver owns the run directory now (holds its :class:`RunLock`)."""
    path = Path(run_dir) / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        got = _flock(fd, shared=True)
        if got is None:
            return lock_is_live(read_lock(run_dir))
        if got:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return not got
    finally:
        os.close(fd)


#: attempts (and seconds between them) to take a lock held for a moment by a reader
#: (``scalebridge status`` testing it) before refusing
LOCK_ATTEMPTS, LOCK_WAIT = 5, 0.1


class RunLock:
    """A run directory's owner: the ``lock`` file, held with ``flock`` by the driver.

    The operating system holds the lock for the driver's open file and drops it
    when the driver ends, however it ends (kill -9 included), so a lock is never
    stale and two drivers that start together cannot both take it. The file
    also records the owner's host and PID for messages. :meth:`acquire`
    refuses (:class:`RunDirError`) while another driver holds it, a second
    campaign of the same process included. On a file system without
    ``flock`` the PID in the file decides: a lock whose process is dead on this
    host is stale and taken over.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "lock"
        self.held = False
        self._fd: int | None = None
        self._pid = os.getpid()  # the process that may release it (not a forked child)

    # a copy (copy, deepcopy, pickle) is an unheld lock of the same directory: only the
    # object that took the lock may let it go
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "held": False, "_fd": None, "_pid": None}

    def __copy__(self) -> RunLock:
        return RunLock(self.path.parent)

    def __deepcopy__(self, memo) -> RunLock:
        return RunLock(self.path.parent)

    def _refuse(self, other: dict[str, Any] | None) -> RunDirError:
        other = other or {}
        if other.get("pid") == os.getpid() and other.get("host") == socket.gethostname():
            who = "another campaign of this process; close it first"
        else:
            who = f"process {other.get('pid', '?')} on host {other.get('host', '?')}; wait for it, or stop it first"
        return RunDirError(f"{self.path.parent}: in use by {who} (lock file {self.path})")

    def _unwritable(self, e: OSError) -> RunDirError:
        return RunDirError(f"{self.path.parent}: cannot write the lock file {self.path} ({e.strerror or e}); "
                           "free space or restore write access, then try again")

    def acquire(self) -> None:
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        for attempt in range(LOCK_ATTEMPTS):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as e:
                raise RunDirError(f"{self.path.parent}: cannot open the lock file {self.path}: {e.strerror}") from None
            got = _flock(fd)
            if got is None:
                os.close(fd)
                return self._acquire_by_pid(me)
            if not got:
                os.close(fd)
                if attempt + 1 < LOCK_ATTEMPTS:
                    time.sleep(LOCK_WAIT)
                    continue
                raise self._refuse(read_lock(self.path.parent))
            try:  # a releasing owner unlinks the file: ours must still be the one at the path
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.write(fd, me.encode())
            except OSError as e:  # a full disk, a file system gone read-only
                self.path.unlink(missing_ok=True)  # still held: as release() does
                os.close(fd)
                raise self._unwritable(e) from None
            self._fd, self.held, self._pid = fd, True, os.getpid()
            return
        raise RunDirError(f"{self.path.parent}: could not take the lock file {self.path}")

    def _acquire_by_pid(self, me: str) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = read_lock(self.path.parent)
                if other is None:  # being written, or garbage: give the writer a moment
                    time.sleep(0.2)
                    other = read_lock(self.path.parent)
                if other is not None and lock_is_live(other):
                    raise self._refuse(other) from None
                self.path.unlink(missing_ok=True)  # stale: its driver is dead
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(me)
            except OSError as e:
                self.path.unlink(missing_ok=True)
                raise self._unwritable(e) from None
            self.held, self._pid = True, os.getpid()
            return
        raise RunDirError(f"{self.path.parent}: could not take the lock file {self.path}")

    def __del__(self) -> None:
        # a campaign dropped without close(): let the directory go with it (a notebook
        # would otherwise keep it locked until the process ends)
        try:
            if self._pid == os.getpid():
                self.release()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._fd is not None:
            # unlinked while still held: a driver that opened it meanwhile finds it gone and retries
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
            return
        lock = read_lock(self.path.parent)
        if lock and lock.get("pid") == os.getpid() and lock.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)


def read_progress(run_dir: str | Path) -> dict[str, Any]:
    """``{"finished": n, "max_id": k}`` as last written, or zeros."""
    try:
        return json.loads((Path(run_dir) / "progress.json").read_text())
    except (OSError, ValueError):
        return {"finished": 0, "max_id": 0}


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``path`` whole or not at all (through a temporary file beside it): a full disk or a
    kill leaves the previous file (``config.json`` of a resumed campaign) as it was."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_progress(run_dir: str | Path, finished: int, max_id: int) -> None:
    """Record (atomically) how many finished rows the store holds."""
    write_atomic(Path(run_dir) / "progress.json", json.dumps({"finished": int(finished), "max_id": int(max_id)}))
