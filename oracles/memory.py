"""Memory this process can use, and allocation failures, for the oracles' up-front size checks.

:func:`available_memory` is what the grid checks of the RVE and transport solvers
(:func:`oracles.rve.microstructure.check_grid_memory`, the transport command line) compare
their estimates with; :func:`out_of_memory` tells an allocation failure (Python's
``MemoryError``, torch's allocator ``RuntimeError``) from other errors so that a command can
report it in one line.
"""

from __future__ import annotations

__all__ = ["available_memory", "grid_name", "out_of_memory", "out_of_memory_message", "physical_memory"]


def physical_memory() -> float:
    """Physical memory of this machine (bytes)."""
    import os

    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        import psutil

        return float(psutil.virtual_memory().total)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().split()[0]
        return None if text == "max" else int(text)
    except (OSError, ValueError, IndexError):
        return None


def available_memory() -> float:
    """Memory (bytes) this process can still allocate: the least of the machine's available
    memory (``MemAvailable``, what the kernel can hand out without swapping; physical memory
    where it is unknown), the headroom under this process's address-space limit
    (``ulimit -v``/``prlimit --as``) and under its cgroup's memory limit (containers, batch
    schedulers)."""
    import os
    import resource

    have = None
    try:
        import psutil

        have = float(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001  (no psutil: read /proc/meminfo)
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        have = float(line.split()[1]) * 1024
        except OSError:
            pass
    if have is None:
        have = physical_memory()
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            have = min(have, float(max(0, soft - used)))
    except (OSError, ValueError, AttributeError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        lim, use = _read_int(limit), _read_int(usage)
        if lim is not None and use is not None and lim < 2**60:
            have = min(have, float(max(0, lim - use)))
    return have


def grid_name(shp: tuple[int, ...]) -> str:
    """A grid as a user writes it: ``256^3`` for a cube, ``64 x 32`` otherwise."""
    return f"{shp[0]}^{len(shp)}" if len(set(shp)) == 1 else " x ".join(map(str, shp))


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation failure: Python's MemoryError or torch's RuntimeError
    (``DefaultCPUAllocator: can't allocate memory``, ``CUDA out of memory``)."""
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(
        t in str(e) for t in ("can't allocate memory", "out of memory", "Cannot allocate memory")))


def out_of_memory_message(e: BaseException) -> str:
    """One line for an allocation failure ``e``: the size it asked for, when it says, and what to do."""
    import re

    m = re.search(r"allocate (\d+) bytes", str(e))
    asked = f" allocating {int(m.group(1)) / 1e9:.3g} GB" if m else ""
    return f"out of memory{asked}: use a coarser grid (or free memory)"
