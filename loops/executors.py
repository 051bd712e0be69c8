"""Where oracle calls run.

:func:`evaluate_point` is the task every worker runs: it rebuilds the oracle
(from its registry spec, or unpickles an oracle instance, once per worker
process), evaluates one point and returns a plain dict. It never raises:
oracle errors, crashes, non-finite outputs, bad variances and timeouts come
back as failed records with their reason.

The campaign engine runs points through a :class:`PointRunner`: a
:class:`WorkerPool` of its own processes for ``executor.kind = "process"``
(one point per worker at a time, so a dead or hung worker names its point,
is killed and replaced, and workers end when their driver dies), else an
:class:`ExecutorHandle` around a thread pool, a serial in-process executor or
a Dask ``distributed.Client`` (a scheduler address, a dask-jobqueue cluster
class, or a ``LocalCluster``) through :meth:`distributed.Client.get_executor`.
:class:`ExecutorHandle` is also the generic ``concurrent.futures`` executor
that the FE² driver uses.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch


class ExecutorLost(RuntimeError):
    """The executor can run no more points (a Dask client that lost its scheduler);
    the points in flight stay pending in the store for a resume. One-line message."""


class _Timeout(BaseException):
    """The SIGALRM of a point's timeout: a ``BaseException``, so that an oracle's own
    ``except Exception`` (e.g. :class:`~oracles.function.FunctionOracle` recording an
    error as a failure) does not wrap it and it is recorded as the timeout it is."""


@contextmanager
def _alarm(seconds: float | None):
    """Raise :class:`_Timeout` after ``seconds`` (only in a process's main thread)."""
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def _handler(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, _handler)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, old)


def _worker_init() -> None:
    # small GP / oracle work on few shared cores: one thread per worker process
    torch.set_num_threads(1)


class PickledOracle:
    """An oracle instance as pickle bytes, rebuilt once per worker process (keyed by digest)."""

    def __init__(self, oracle):
        import hashlib
        import pickle

        try:
            self.blob = pickle.dumps(oracle)
        except Exception:  # noqa: BLE001  (pickle raises several types)
            from oracles.function import check_picklable

            check_picklable(oracle, "executor.kind = 'process'")  # raises the one-line InvalidInput
            raise
        self.digest = hashlib.sha256(self.blob).hexdigest()


_UNPICKLED: dict[str, Any] = {}


def _oracle_of(ref):
    """The oracle a task names: a registry spec dict, a :class:`PickledOracle` or an instance."""
    if isinstance(ref, dict):
        from loops.registry import cached_oracle

        return cached_oracle(ref)
    if isinstance(ref, PickledOracle):
        o = _UNPICKLED.get(ref.digest)
        if o is None:
            import pickle

            o = pickle.loads(ref.blob)
            _UNPICKLED.clear()
            _UNPICKLED[ref.digest] = o
        return o
    return ref


def check_record(rec: dict[str, Any], m: int) -> dict[str, Any]:
    """Fail a successful record whose numbers are not ``m`` finite outputs and ``m`` finite variances >= 0.

    Returns ``rec`` (changed in place): ``failed``/``reason`` set and ``y``/``yvar`` dropped when bad.
    """
    if rec.get("failed"):
        rec["y"] = None
        rec["yvar"] = None
        rec.setdefault("reason", "failed")
        return rec
    y, yvar = rec.get("y"), rec.get("yvar")
    reason = None
    if y is None or len(y) != m:
        reason = f"output has {0 if y is None else len(y)} values, expected {m}"
    elif not all(isinstance(v, (int, float)) and math.isfinite(v) for v in y):
        reason = "non-finite output"
    elif yvar is not None:
        if len(yvar) != m:
            reason = f"variance has {len(yvar)} values, expected {m}"
        elif not all(isinstance(v, (int, float)) and math.isfinite(v) for v in yvar):
            reason = "non-finite variance"
        elif min(yvar) < 0:
            reason = f"negative variance {min(yvar):g}"
    if reason is not None:
        rec.update(failed=True, reason=reason, y=None, yvar=None)
    return rec


def evaluate_point(spec, x: list[float], fidelity: int, timeout: float | None = None) -> dict[str, Any]:
    """Evaluate one point; never raises.

    Args:
        spec: the oracle: a registry spec ``{"name": ..., **kwargs}``, a
            :class:`PickledOracle` or an ``Oracle`` instance.
        x: ``d`` inputs; fidelity: the level; timeout: seconds (SIGALRM, main thread only).

    Returns:
        ``{"y", "yvar", "failed", "reason", "cost", "wall_time", "metadata",
        "worker", "start", "end"}`` with plain Python values; outputs that are
        not finite, and variances that are not finite or negative, fail the point
        (:func:`check_record`).
    """
    start = time.time()
    t0 = time.perf_counter()
    rec: dict[str, Any]
    oracle = None
    try:
        oracle = _oracle_of(spec)
        # the point's wall time is its evaluation's: building (or unpickling) the
        # oracle once per worker is not charged to whichever level came first
        t0 = time.perf_counter()
        with _alarm(timeout):
            res = oracle.evaluate(torch.tensor([x], dtype=torch.float64), fidelity)
        rec = res.to_records()[0]
        rec["cost"] = float(res.cost[0])
    except _Timeout:
        rec = {"failed": True, "reason": f"timeout after {timeout:g} s"}
    except SystemExit as e:  # sys.exit() in an oracle ends its point, not the campaign's driver
        rec = {"failed": True, "reason": f"the oracle called sys.exit({e.code!r})"}
    except Exception as e:  # noqa: BLE001  (an oracle bug must not stop the campaign)
        rec = {"failed": True, "reason": f"{type(e).__name__}: {e}"}
    if oracle is not None:
        check_record(rec, oracle.num_outputs)
    rec.setdefault("y", None)
    rec.setdefault("yvar", None)
    rec.setdefault("metadata", {})
    if rec.get("cost") is None:
        try:
            rec["cost"] = float(oracle.cost_model(torch.zeros(1, len(x)), fidelity)[0])
        except Exception:  # noqa: BLE001
            rec["cost"] = 0.0
    rec["wall_time"] = time.perf_counter() - t0
    rec["worker"] = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    rec["start"], rec["end"] = start, time.time()
    rec["metadata"] = {**rec["metadata"], "worker": rec["worker"], "start": start}
    return rec


class SerialExecutor(Executor):
    """Runs each task at submit time in this process (debugging, tiny oracles)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001
            f.set_exception(e)
        return f


def _start_method() -> str:
    """``fork`` when this process runs no other thread, else ``forkserver``.

    A forked worker starts in milliseconds with everything the driver imported,
    where a fork server first imports torch and BoTorch (seconds, tens of
    seconds on a loaded machine). Fork is only unsafe when another thread may
    hold a lock at the fork, so it is used only from a single-threaded driver;
    the workers set torch to one thread before any work (:func:`_worker_init`),
    so no OpenMP team is inherited in use.
    """
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "forkserver"


def _ready() -> int:
    return os.getpid()


#: seconds to wait for a Dask scheduler at ``executor.address``
DASK_CONNECT_TIMEOUT = 5.0


def check_dask_scheduler(address: str, timeout: float = DASK_CONNECT_TIMEOUT) -> None:
    """Refuse (``RuntimeError``, one line) an ``executor.address`` that is not a
    reachable Dask scheduler, before ``distributed.Client`` waits on it.

    The address must parse as a Dask address with a port. For ``tcp://`` the
    server must send within ``timeout`` s the handshake a Dask scheduler sends
    as soon as a connection opens: a live port of another server (the
    dashboard, a web server) accepts the connection and never answers, where
    the client would wait forever.
    """
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, loc = parse_address(address)
        get_backend(scheme)  # a scheme Dask knows
        host, port = parse_host_port(loc)
    except (ValueError, TypeError) as e:
        raise RuntimeError(
            f"executor.address = {address!r} is not a Dask scheduler address ({e}); "
            "expected e.g. 'tcp://host:8786'"
        ) from None
    if scheme != "tcp":
        return
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except TimeoutError:
        raise RuntimeError(
            f"executor.address = {address!r}: no server accepted a connection within {timeout:g} s (nothing "
            "listens there, or a firewall drops it); start the scheduler or fix the address"
        ) from None
    except OSError as e:
        raise RuntimeError(
            f"executor.address = {address!r}: no Dask scheduler answered within {timeout:g} s "
            f"({e.strerror or type(e).__name__}); start one or fix the address"
        ) from None
    try:
        with sock:
            sock.settimeout(timeout)
            first = sock.recv(1)
    except TimeoutError:
        first = None
    except OSError as e:
        raise RuntimeError(
            f"executor.address = {address!r}: no Dask scheduler answered within {timeout:g} s "
            f"({e.strerror or type(e).__name__}); start one or fix the address"
        ) from None
    if not first:
        raise RuntimeError(
            f"executor.address = {address!r}: a server listens there but sent no Dask handshake within "
            f"{timeout:g} s (the dashboard's port, or another service?); give the scheduler's port (default 8786)"
        )

#: imported once by the fork server; every pool worker forks with them loaded
PRELOAD = ("torch", "botorch", "loops.executors", "loops.registry")


#: seconds a LocalCluster started by the campaign may have no worker before it is started anew
NO_WORKERS_GRACE = 30.0
#: LocalCluster restarts a campaign's driver makes before it counts the executor as lost
MAX_CLUSTER_RESTARTS = 3


class ExecutorHandle:
    """An executor plus what is needed to rebuild it after a worker dies.

    Args:
        cfg: the ``executor`` config table (kind, workers, ...).
        executor: an ``Executor`` to use instead of building one.
        preload: modules the workers need (e.g. the oracle's): for the process
            pool they are imported once by the fork server, before any worker
            starts, instead of once per worker.
    """

    def __init__(self, cfg, executor: Executor | None = None, preload: tuple[str, ...] = ()):
        self.cfg = cfg
        self.client = None
        self.cluster = None
        self.preload = tuple(dict.fromkeys(PRELOAD + tuple(preload)))
        self._owned = executor is None
        self._no_workers_since: float | None = None
        self._lost_why = "scheduler"
        self.cluster_restarts = 0
        self.executor = executor if executor is not None else self._build()

    @property
    def workers(self) -> int:
        """Points evaluated at once (the serial executor runs each when it is submitted: one)."""
        return 1 if isinstance(self.executor, SerialExecutor) else self.cfg.workers

    @property
    def queues(self) -> bool:
        """Whether submitted points wait for a free worker (so prefetching keeps workers busy)."""
        return not isinstance(self.executor, SerialExecutor)

    def _build(self) -> Executor:
        kind = self.cfg.kind
        if kind == "process":
            # fork from a single-threaded driver, else a fork server (see _start_method)
            ctx = mp.get_context(_start_method())
            if ctx.get_start_method() == "forkserver":
                # workers fork from a server that has torch/BoTorch/the oracle imported instead
                # of importing them each (the server persists between pools of this process)
                ctx.set_forkserver_preload(list(self.preload))
            pool = ProcessPoolExecutor(self.cfg.workers, mp_context=ctx, initializer=_worker_init)
            # start every worker now (the pool would start them one by one on submission)
            for _ in range(self.cfg.workers):
                pool.submit(_ready)
            return pool
        if kind == "thread":
            return ThreadPoolExecutor(self.cfg.workers)
        if kind == "serial":
            return SerialExecutor()
        if kind == "dask":
            from distributed import Client

            if self.cfg.address:
                check_dask_scheduler(self.cfg.address)
                try:
                    self.client = Client(self.cfg.address, timeout=DASK_CONNECT_TIMEOUT)
                except (OSError, TimeoutError) as e:
                    raise RuntimeError(
                        f"executor.address = {self.cfg.address!r}: no Dask scheduler answered within "
                        f"{DASK_CONNECT_TIMEOUT:g} s ({type(e).__name__}); start one or fix the address"
                    ) from None
                except (TypeError, ValueError) as e:
                    # e.g. tls:// without the security settings distributed needs for it
                    raise RuntimeError(
                        f"executor.address = {self.cfg.address!r}: distributed cannot connect to it "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); for tls:// give the "
                        "security settings through Dask's configuration (distributed.comm.tls)"
                    ) from None
            elif self.cfg.cluster:
                import importlib

                jq = importlib.import_module("dask_jobqueue")
                cls = getattr(jq, self.cfg.cluster)
                self.cluster = cls(**self.cfg.cluster_options)
                self.cluster.scale(self.cfg.workers)
                self.client = Client(self.cluster)
            else:
                from distributed import LocalCluster

                self.cluster = LocalCluster(
                    n_workers=self.cfg.workers,
                    threads_per_worker=1,
                    processes=self.cfg.local_processes,
                    dashboard_address=None,
                    **self.cfg.cluster_options,
                )
                self.client = Client(self.cluster)
            if self.cfg.local_processes or self.cfg.address or self.cfg.cluster:
                try:
                    self.client.run(_worker_init)
                except Exception:  # noqa: BLE001
                    pass
            # pure=False: two calls at the same x are two evaluations
            return self.client.get_executor(pure=False)
        raise ValueError(f"executor.kind = {kind!r}; allowed: process, thread, serial, dask")

    def rebuild(self) -> None:
        """Replace a broken process pool (a worker died)."""
        if not self._owned:
            return
        if self.cfg.kind == "process":
            try:
                self.executor.shutdown(wait=False, cancel_futures=True)
            except Exception:  # noqa: BLE001
                pass
            self.executor = self._build()

    def submit(self, *args) -> Future:
        try:
            return self.executor.submit(evaluate_point, *args)
        except Exception:  # noqa: BLE001  (distributed raises its own types when its scheduler is gone)
            if self.lost():
                raise ExecutorLost(self.lost_message()) from None
            raise

    def lost(self) -> bool:
        """Whether a Dask client lost its scheduler, or the ``LocalCluster`` this
        handle started lost every worker and could not start new ones within
        :data:`NO_WORKERS_GRACE` seconds (an oracle that kills its worker process:
        distributed retires such a task as ``KilledWorker`` and may leave the
        cluster with none), so no point can run or return."""
        if self.client is None:
            return False
        if getattr(self.client, "status", "running") not in ("running", "connecting"):
            self._lost_why = "scheduler"
            return True
        if not (self._owned and self.cluster is not None and self.cfg.address is None and self.cfg.cluster is None):
            return False  # a scheduler or job-queue cluster of the user's may wait for workers on purpose
        try:
            n = len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # noqa: BLE001
            return False
        if n:
            self._no_workers_since = None
            return False
        now = time.monotonic()
        if self._no_workers_since is None:
            self._no_workers_since = now
            try:  # start the workers again
                self.cluster.scale(self.cfg.workers)
            except Exception:  # noqa: BLE001
                pass
            return False
        if now - self._no_workers_since > NO_WORKERS_GRACE:
            self._lost_why = "workers"
            return True
        return False

    def restart_cluster(self) -> bool:
        """Start the ``LocalCluster`` this handle owns anew (after :meth:`lost` found it without
        workers), at most :data:`MAX_CLUSTER_RESTARTS` times; False when it may not or could not."""
        if self._lost_why != "workers" or self.cluster_restarts >= MAX_CLUSTER_RESTARTS:
            return False
        self.cluster_restarts += 1
        self.shutdown()
        try:
            self.executor = self._build()
        except Exception:  # noqa: BLE001
            return False
        self._no_workers_since = None
        return True

    def lost_message(self) -> str:
        if self._lost_why == "workers":
            return (f"the Dask LocalCluster has no worker left (they died, e.g. an oracle that crashes its process) "
                    f"and none started again within {NO_WORKERS_GRACE:g} s, {self.cluster_restarts} restarts of the "
                    "cluster included; the points in flight stay pending: use executor.kind = 'process' (it replaces "
                    "dead workers) and `scalebridge resume` the run directory")
        where = f" at {self.cfg.address}" if self.cfg.address else ""
        return (f"the Dask scheduler{where} is gone (lost connection); the points in flight stay pending: "
                "start the scheduler again and `scalebridge resume` the run directory (at another address: "
                "`scalebridge run` the config with the new executor.address and the same --run-dir)")

    def shutdown(self) -> None:
        """Stop the executor (and a cluster it started); a scheduler already gone is not an error here."""
        if not self._owned:
            return
        for stop in (lambda: self.executor.shutdown(wait=False, cancel_futures=True),
                     lambda: self.client is not None and self.client.close(),
                     lambda: self.cluster is not None and self.cluster.close()):
            try:
                stop()
            except TypeError:  # an executor without cancel_futures
                try:
                    self.executor.shutdown(wait=False)
                except Exception:  # noqa: BLE001
                    pass
            except Exception:  # noqa: BLE001  (e.g. ClosedClientError: the scheduler died first)
                pass


# ----------------------------------------------------------- campaign workers

#: seconds between a worker's checks that its driver is still alive
PARENT_POLL = 0.25


def _watch_parent(driver: int) -> None:
    """End this worker when its driver dies, whatever killed it.

    The worker's parent is the driver (fork) or the fork server (which ends
    with the driver); either way the worker is re-parented when it dies, so
    ``getppid`` changes. The driver's pid is checked as well.
    """
    parent = os.getppid()
    while True:
        time.sleep(PARENT_POLL)
        if os.getppid() != parent:
            os._exit(1)
        try:
            os.kill(driver, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def picklable_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with each value that does not pickle replaced by its ``repr`` (the
    result itself is kept: it is the user's computed answer)."""
    import pickle

    out = {}
    for k, v in meta.items():
        try:
            pickle.dumps(v)
            out[str(k)] = v
        except Exception:  # noqa: BLE001  (pickle raises several types)
            out[str(k)] = repr(v)
    return out


def _worker_main(conn, driver: int) -> None:
    """One campaign worker: evaluate the points the driver sends, one at a time, until told to stop."""
    # the driver handles Ctrl-C (sent to the whole process group) and stops its workers itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker_init()
    threading.Thread(target=_watch_parent, args=(driver,), daemon=True, name="parent-watch").start()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        if msg is None:
            os._exit(0)
        key, spec, x, fidelity, timeout = msg
        rec = evaluate_point(spec, x, fidelity, timeout)
        try:
            try:
                conn.send((key, rec))
            except (BrokenPipeError, OSError):
                raise
            except Exception:  # noqa: BLE001  (a metadata value that does not pickle, e.g. a lock)
                rec["metadata"] = picklable_metadata(rec.get("metadata") or {})
                conn.send((key, rec))
        except (BrokenPipeError, OSError):
            os._exit(0)


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.key = None  # the task it runs
        self.started = 0.0
        self.timeout: float | None = None


def death_reason(exitcode: int | None) -> str:
    """``worker died: signal 11`` (negative exit code) or ``worker died: exit code 1``."""
    if exitcode is None:
        return "worker died"
    if exitcode < 0:
        return f"worker died: signal {-exitcode}"
    return f"worker died: exit code {exitcode}"


class WorkerPool:
    """``workers`` processes that each evaluate one point at a time.

    Points wait in the driver until a worker is free, so a point's clock starts
    when a worker starts it. A worker that dies (a signal, ``os._exit``, the
    OOM killer) is replaced and its point comes back as a record with
    ``infra = True`` and the reason ``worker died: signal N``. A point that
    runs ``grace`` seconds past its timeout (an oracle that blocks SIGALRM or
    hangs in C code) has its worker killed and comes back as
    ``timeout after T s (worker killed)``. Workers end themselves within
    :data:`PARENT_POLL` seconds of their driver's death, however it died.

    Args:
        workers: number of processes.
        preload: modules a fork server imports before it forks workers.
        grace: seconds past the timeout before a worker is killed.
    """

    def __init__(self, workers: int, preload: tuple[str, ...] = (), grace: float = 2.0):
        self.n = int(workers)
        self.grace = float(grace)
        self.preload = tuple(preload)
        self.queue: list[tuple] = []
        self.workers: list[_Worker] = [self._spawn() for _ in range(self.n)]
        self.restarts = 0

    def _spawn(self) -> _Worker:
        ctx = mp.get_context(_start_method())
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload(list(self.preload))
        return _Worker(ctx)

    def submit(self, key, spec, x, fidelity, timeout) -> None:
        self.queue.append((key, spec, x, fidelity, timeout))
        self._dispatch()

    def running(self) -> list:
        """Keys submitted and not yet returned (started or queued)."""
        return [w.key for w in self.workers if w.key is not None] + [t[0] for t in self.queue]

    def _dispatch(self) -> None:
        for i, w in enumerate(self.workers):
            if not self.queue:
                return
            if w.key is not None:
                continue
            if not w.proc.is_alive():
                w = self.workers[i] = self._replace(w)
            task = self.queue.pop(0)
            try:
                w.conn.send(task)
            except (BrokenPipeError, OSError):
                self.queue.insert(0, task)
                self.workers[i] = self._replace(w)
                continue
            w.key, w.started, w.timeout = task[0], time.monotonic(), task[4]

    def _replace(self, w: _Worker) -> _Worker:
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(5)
        w.conn.close()
        self.restarts += 1
        return self._spawn()

    def poll(self, timeout: float | None) -> list[tuple[Any, dict[str, Any]]]:
        """Wait up to ``timeout`` s for results; returns ``(key, record)`` pairs (possibly none)."""
        from multiprocessing.connection import wait as mp_wait

        self._dispatch()
        busy = [w for w in self.workers if w.key is not None]
        if not busy:
            if timeout:
                time.sleep(min(timeout, 0.05))
            return []
        now = time.monotonic()
        deadlines = [w.started + w.timeout + self.grace - now for w in busy if w.timeout is not None]
        t = timeout if not deadlines else max(0.0, min([timeout if timeout is not None else 1e9, *deadlines]))
        objs = {w.conn: w for w in busy}
        objs.update({w.proc.sentinel: w for w in busy})
        ready = mp_wait(list(objs), timeout=t)
        out = []
        touched = set()
        for r in ready:
            w = objs[r]
            if id(w) in touched:
                continue
            touched.add(id(w))
            i = self.workers.index(w)
            got = None
            try:
                if w.conn.poll():
                    got = w.conn.recv()
            except (EOFError, OSError):
                got = None
            if got is not None:
                out.append(got)
                w.key = None
                continue
            w.proc.join(1.0)
            out.append((w.key, {"failed": True, "infra": True, "reason": death_reason(w.proc.exitcode)}))
            w.key = None
            self.workers[i] = self._replace(w)
        now = time.monotonic()
        for i, w in enumerate(self.workers):
            if w.key is not None and w.timeout is not None and now - w.started > w.timeout + self.grace:
                out.append((w.key, {"failed": True, "infra": True,
                                    "reason": f"timeout after {w.timeout:g} s (worker killed)"}))
                w.key = None
                self.workers[i] = self._replace(w)
        self._dispatch()
        return out

    def drain(self) -> list[tuple[Any, dict[str, Any]]]:
        """The answers that workers have sent and the driver not yet read, without waiting,
        starting a queued point or replacing a worker (a dead worker's point is not reported)."""
        out = []
        for w in self.workers:
            if w.key is None:
                continue
            try:
                if w.conn.poll():
                    out.append(w.conn.recv())
                    w.key = None
            except (EOFError, OSError):
                pass
        return out

    def cancel_queued(self) -> list:
        """Drop the points not yet started; returns their keys."""
        keys = [t[0] for t in self.queue]
        self.queue.clear()
        return keys

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers if w.proc.pid is not None]

    def shutdown(self) -> None:
        """Stop every worker now (running points are abandoned: they stay pending in the store)."""
        self.queue.clear()
        for w in self.workers:
            try:
                if w.key is None and w.proc.is_alive():
                    w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        t_end = time.monotonic() + 1.0
        for w in self.workers:
            if w.key is None:
                w.proc.join(max(0.0, t_end - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
            w.proc.join(5)
            w.conn.close()
        self.workers = []


class PointRunner:
    """What the campaign engine evaluates points with.

    ``executor.kind = "process"`` runs a :class:`WorkerPool`; every other kind
    (threads, serial, Dask, or an ``Executor`` passed in) runs through an
    :class:`ExecutorHandle` and its futures. Either way the engine sees
    :meth:`submit` and :meth:`poll`, which returns ``(row id, record)`` pairs;
    a record with ``infra = True`` is a failure of the infrastructure (a worker
    died, or was killed at its timeout), not of the oracle.

    Futures-based executors cannot kill a running call: a call past
    ``timeout + grace`` (counted from when it started running: where the
    executor tells, or for Dask from when it is among the oldest points in
    flight, as many as the cluster has threads) is recorded as a timeout and
    abandoned.
    """

    def __init__(self, cfg, executor: Executor | None = None, preload: tuple[str, ...] = (), grace: float = 2.0):
        self.cfg = cfg
        self.grace = float(grace)
        self.pool: WorkerPool | None = None
        self.handle: ExecutorHandle | None = None
        if executor is None and cfg.kind == "process":
            self.pool = WorkerPool(cfg.workers, tuple(dict.fromkeys(PRELOAD + tuple(preload))), grace=grace)
        else:
            self.handle = ExecutorHandle(cfg, executor, preload=preload)
        self.futures: dict[Future, list] = {}  # future -> [key, submitted, started, timeout]
        self._lost: str | None = None  # why the executor can run nothing more (raised at the next poll)

    @property
    def workers(self) -> int:
        return self.pool.n if self.pool is not None else self.handle.workers

    @property
    def queues(self) -> bool:
        return self.pool is not None or self.handle.queues

    def submit(self, key, spec, x, fidelity, timeout) -> None:
        if self.pool is not None:
            self.pool.submit(key, spec, x, fidelity, timeout)
            return
        if self._lost:
            raise ExecutorLost(self._lost)
        fut = self.handle.submit(spec, x, fidelity, timeout)
        self.futures[fut] = [key, time.monotonic(), None, timeout]

    def running(self) -> list:
        if self.pool is not None:
            return self.pool.running()
        return [v[0] for v in self.futures.values()]

    def poll(self, timeout: float | None) -> list[tuple[Any, dict[str, Any]]]:
        if self.pool is not None:
            return self.pool.poll(timeout)
        if not self._lost and self.handle.lost():
            if self.handle.restart_cluster():
                # the points in flight died with the workers: worker faults, retried as any other
                out = [(v[0], {"failed": True, "infra": True,
                               "reason": "worker died (the Dask LocalCluster lost every worker and was started anew)"})
                       for v in self.futures.values()]
                self.futures.clear()
                return out
            self._lost = self.handle.lost_message()
        if self._lost:
            raise ExecutorLost(self._lost)
        if not self.futures:
            return []
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(self.futures), timeout=min(timeout or 1.0, 1.0), return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            key = self.futures.pop(fut)[0]
            try:
                out.append((key, fut.result()))
            except Exception as e:  # noqa: BLE001  (the worker, not the oracle, failed)
                if type(e).__name__ == "CancelledError" and self.handle.client is not None:
                    # only distributed cancels a future this runner still holds: its connection to the
                    # scheduler broke. The point did not fail; it stays pending for a resume
                    self._lost = self.handle.lost_message()
                    continue
                name = type(e).__name__
                reason = death_reason(None) + f" ({name}: {e})" if name in ("KilledWorker", "BrokenProcessPool") \
                    else f"worker failed ({name}: {e})"
                out.append((key, {"failed": True, "infra": True, "reason": reason}))
        now = time.monotonic()
        if self.handle.client is not None:
            # a Dask future does not say when its task starts: the oldest points in flight, as
            # many as the cluster has threads, are taken as running (Dask runs them in about the
            # order they were submitted), so a point prefetched behind busy workers is not charged
            # its wait (it had been, from submission, and failed as a timeout)
            if any(v[2] is None for v in self.futures.values()):  # ask the scheduler only then
                for v in list(self.futures.values())[: self._dask_slots()]:
                    if v[2] is None:
                        v[2] = now
        for fut, v in list(self.futures.items()):
            key, submitted, started, t = v
            if started is None and self.handle.client is None and getattr(fut, "running", lambda: True)():
                v[2] = started = now
            if t is not None and started is not None and now - started > t + self.grace and not fut.done():
                fut.cancel()
                self.futures.pop(fut)
                out.append((key, {"failed": True, "infra": True, "reason": f"timeout after {t:g} s (abandoned)"}))
        return out

    def drain(self) -> list[tuple[Any, dict[str, Any]]]:
        """The answers already returned and not yet polled, without waiting (a point whose
        worker failed is not reported: it stays pending)."""
        if self.pool is not None:
            return self.pool.drain()
        out = []
        for fut, v in list(self.futures.items()):
            try:
                if fut.done() and not fut.cancelled() and fut.exception(timeout=0) is None:
                    out.append((v[0], fut.result(timeout=0)))
                    self.futures.pop(fut)
            except Exception:  # noqa: BLE001  (a Dask future whose scheduler is gone)
                pass
        return out

    def _dask_slots(self) -> int:
        """Threads of the Dask cluster's workers (``executor.workers`` where the scheduler
        cannot say)."""
        try:
            return int(sum(self.handle.client.nthreads().values()))
        except Exception:  # noqa: BLE001  (a scheduler that does not answer: the configured count)
            return self.handle.workers

    def pids(self) -> list[int]:
        """Worker process ids (process pool only)."""
        return self.pool.pids() if self.pool is not None else []

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        else:
            self.futures.clear()
            self.handle.shutdown()
