"""Where oracle calls run: any ``concurrent.futures.Executor``.

:func:`evaluate_point` is the task every worker runs: it rebuilds the oracle
from its registry spec (once per worker process), evaluates one point and
returns a plain dict. It never raises: oracle errors, crashes, NaN outputs and
timeouts come back as failed records with their reason. An exception from the
future itself therefore means the *infrastructure* failed (a worker died), and
the engine resubmits the point.

:func:`make_executor` builds the configured executor: a local process pool
(default), a thread pool, a serial in-process executor, or a Dask
``distributed.Client`` (a scheduler address, a dask-jobqueue cluster class, or
a ``LocalCluster``) through :meth:`distributed.Client.get_executor`.
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


class _Timeout(Exception):
    pass


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


def evaluate_point(spec: dict[str, Any], x: list[float], fidelity: int, timeout: float | None = None) -> dict[str, Any]:
    """Evaluate one point of the oracle ``spec``; never raises.

    Returns:
        ``{"y", "yvar", "failed", "reason", "cost", "wall_time", "metadata",
        "worker", "start", "end"}`` with plain Python values.
    """
    from loops.registry import cached_oracle

    start = time.time()
    t0 = time.perf_counter()
    rec: dict[str, Any]
    try:
        oracle = cached_oracle(spec)
        with _alarm(timeout):
            res = oracle.evaluate(torch.tensor([x], dtype=torch.float64), fidelity)
        rec = res.to_records()[0]
        rec["cost"] = float(res.cost[0])
    except _Timeout:
        rec = {"failed": True, "reason": f"timeout after {timeout:g} s"}
    except Exception as e:  # noqa: BLE001  (an oracle bug must not stop the campaign)
        rec = {"failed": True, "reason": f"{type(e).__name__}: {e}"}
    if rec.get("y") is not None and not all(math.isfinite(v) for v in rec["y"]):
        rec.update(failed=True, y=None, reason="non-finite output")
    rec.setdefault("y", None)
    rec.setdefault("yvar", None)
    rec.setdefault("metadata", {})
    if rec.get("cost") is None:
        try:
            rec["cost"] = float(cached_oracle(spec).cost_model(torch.zeros(1, len(x)), fidelity)[0])
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


#: imported once by the fork server; every pool worker forks with them loaded
PRELOAD = ("torch", "botorch", "loops.executors", "loops.registry")


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
                self.client = Client(self.cfg.address)
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
        return self.executor.submit(evaluate_point, *args)

    def shutdown(self) -> None:
        if not self._owned:
            return
        try:
            self.executor.shutdown(wait=False, cancel_futures=True)
        except TypeError:
            self.executor.shutdown(wait=False)
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
