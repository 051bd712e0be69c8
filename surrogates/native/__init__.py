r"""Fused C kernels for the surrogates' stress-and-tangent hot paths.

The constitutive evaluations of the GP and the neural ensembles are a few
hundred to a few thousand floating-point operations per point with
transcendentals in between. Written as sequences of torch operations every
intermediate makes a round trip through memory and every operation pays the
dispatcher; written as one loop over points, with the arithmetic on vectors of
``VL`` points (GCC/Clang vector extensions: 8 doubles with AVX-512, 4 with
AVX2) and inlined vector ``exp`` and ``log(1 + e)``, the same
mathematics runs several times faster with everything in registers.

The C sources live next to their Python callers as strings; :func:`load`
compiles one with the system C compiler (``$CC``, else ``cc``) on first use,
for the host CPU (``-march=native``), and caches the shared library under
``$SCALEBRIDGE_KERNEL_CACHE`` (default ``~/.cache/scalebridge/kernels``),
keyed by the source, flags, compiler and CPU. Without a working compiler (or
with ``SCALEBRIDGE_NATIVE=0``) :func:`load` returns None and the callers use
their torch implementations, which compute the same quantities.

No ``-ffast-math``: IEEE arithmetic; the inlined ``exp`` and ``log(1 + e)``
are accurate to a few ulp (tested against torch).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

__all__ = ["load", "enabled", "parallel_ranges", "ptr"]

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}
_configured: set[str] = set()  # names whose configure step has run
_pool: ThreadPoolExecutor | None = None
_pool_size = 0

#: common header: vector type of VL doubles and vector exp/log1p
HEADER = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#define VL 8
#elif defined(__AVX__)
#define VL 4
#else
#define VL 2
#endif
typedef double vd __attribute__((vector_size(VL * 8)));
typedef int64_t vi __attribute__((vector_size(VL * 8)));
#define INLINE static inline __attribute__((always_inline))

INLINE vd vbcast(double a) { vd r; for (int l = 0; l < VL; l++) r[l] = a; return r; }
INLINE vi vbcast_i(int64_t a) { vi r; for (int l = 0; l < VL; l++) r[l] = a; return r; }
INLINE vd vload(const double* p) { vd v; memcpy(&v, p, sizeof(vd)); return v; }
INLINE void vstore(double* p, vd v) { memcpy(p, &v, sizeof(vd)); }
INLINE double vsum(vd x) { double s = 0.0; for (int l = 0; l < VL; l++) s += x[l]; return s; }
/* m: lanes of -1 (take a) or 0 (take b), as vector comparisons return */
INLINE vd vselect(vi m, vd a, vd b) { return (vd)(((vi)a & m) | ((vi)b & ~m)); }
/* min/max as a vector comparison and a select: written lane by lane, GCC
   kept them scalar inside larger loops (extract, vmaxsd, insert per lane) */
INLINE vd vmin(vd a, vd b) { return vselect(a < b, a, b); }
INLINE vd vmax(vd a, vd b) { return vselect(a > b, a, b); }
INLINE vd vsqrt(vd x) { vd r; for (int l = 0; l < VL; l++) r[l] = sqrt(x[l]); return r; }
INLINE vd vabs(vd x) { return (vd)((vi)x & vbcast_i(0x7fffffffffffffffLL)); }

/* exp inlined (no call, no table): k = round(x / ln 2), r = x - k ln 2 (Cody-Waite,
   |r| <= ln2 / 2), e^r by its degree-13 Taylor polynomial (truncation < 1e-17
   relative; Estrin's scheme), times 2^k built in the exponent bits. x is clamped to [-708, 708]
   (e^-708 ~ 3e-308: what it weights is negligible; no denormals, no overflow).
   Callers pass finite x (NaN would be clamped, not propagated). */
INLINE vd vexp_core(vd x) /* x in [-708, 708] */
{
    const vd shifter = vbcast(6755399441055744.0); /* 1.5 * 2^52: rounds to integer */
    vd t = x * 1.4426950408889634 + shifter;
    vd k = t - shifter;
    vd r = x - k * 6.93147180369123816490e-01;
    r = r - k * 1.90821492927058770002e-10;
    /* Estrin's scheme: the same polynomial, a short dependency chain */
    vd r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    vd q0 = 1.0 + r, q1 = 0.5 + r * (1.0 / 6.0), q2 = 1.0 / 24.0 + r * (1.0 / 120.0);
    vd q3 = 1.0 / 720.0 + r * (1.0 / 5040.0), q4 = 1.0 / 40320.0 + r * (1.0 / 362880.0);
    vd q5 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0);
    vd q6 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0);
    vd s0 = q0 + r2 * q1, s1 = q2 + r2 * q3, s2 = q4 + r2 * q5;
    vd p = (s0 + r4 * s1) + r8 * (s2 + r4 * q6);
    /* k's integer sits in the low mantissa bits of t (|k| < 2^31): reading it
       there keeps the conversion in vector registers (AVX2 has no packed
       double -> int64 conversion; the compiler would go lane by lane) */
    vi ki = (vi)t - (vi)shifter;
    return p * (vd)((ki + 1023) << 52);
}
INLINE vd vexp(vd x) { return vexp_core(vmin(vmax(x, vbcast(-708.0)), vbcast(708.0))); }
/* e^x for x <= 0: the clamp below only (5-10 % of the GP kernel's time in an A/B) */
INLINE vd vexp_nonpos(vd x) { return vexp_core(vmax(x, vbcast(-708.0))); }

/* log(1 + e) for e in [0, 1] (the softplus of a = -log e), inlined:
   log(1 + e) = 2 atanh(s) with s = e / (2 + e), or, for e > sqrt 2 - 1, ln 2 +
   2 atanh(s) with s = (e - 1) / (e + 3) (that is log((1 + e) / 2)); either way
   |s| <= 0.1716, so atanh(s) / s = sum_n s^2n / (2n + 1) to n = 9 leaves
   < 3e-17 relative. e - 1 is exact there (Sterbenz), no cancellation. */
INLINE vd vlog1p_unit(vd e)
{
    vi big = e > 0.41421356237309503;
    vd num = vselect(big, e - 1.0, e), den = vselect(big, e + 3.0, e + 2.0);
    vd s = num / den, s2 = s * s;
    vd q = vbcast(1.0 / 19.0);
    q = q * s2 + 1.0 / 17.0;
    q = q * s2 + 1.0 / 15.0;
    q = q * s2 + 1.0 / 13.0;
    q = q * s2 + 1.0 / 11.0;
    q = q * s2 + 1.0 / 9.0;
    q = q * s2 + 1.0 / 7.0;
    q = q * s2 + 1.0 / 5.0;
    q = q * s2 + 1.0 / 3.0;
    vd r = 2.0 * s + (2.0 * s * s2) * q;
    return r + vselect(big, vbcast(0.69314718055994531), vbcast(0.0));
}

int sb_vector_length(void) { return VL; }
/* sb_exp_test: the inlined exp on n values, for the tests */
void sb_exp_test(int64_t n, const double* x, double* y)
{
    for (int64_t i = 0; i + VL <= n; i += VL) vstore(y + i, vexp(vload(x + i)));
}
/* sb_log1p_test: the inlined log(1 + e), e in [0, 1], for the tests */
void sb_log1p_test(int64_t n, const double* x, double* y)
{
    for (int64_t i = 0; i + VL <= n; i += VL) vstore(y + i, vlog1p_unit(vload(x + i)));
}
"""


def enabled() -> bool:
    """False when ``SCALEBRIDGE_NATIVE=0`` (forces the torch implementations)."""
    return os.environ.get("SCALEBRIDGE_NATIVE", "1") not in ("0", "false", "False", "no")


def _cache_dir() -> Path:
    env = os.environ.get("SCALEBRIDGE_KERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "scalebridge" / "kernels"


def _cpu_id() -> str:
    # -march=native: a library built here must not be loaded on another CPU
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features", "model name")):
                    return platform.machine() + line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc.split()[0]):
        return cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


def _build(cc: str, src: str, out: Path) -> bool:
    flags = ["-O3", "-march=native", "-fno-math-errno", "-fPIC", "-shared", "-std=gnu11"]
    with tempfile.TemporaryDirectory() as tmp:
        c_file = Path(tmp) / "kernel.c"
        c_file.write_text(src)
        so_tmp = Path(tmp) / "kernel.so"
        cmd = [*cc.split(), *flags, str(c_file), "-o", str(so_tmp), "-lm"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if proc.returncode != 0:
            return False
        out.parent.mkdir(parents=True, exist_ok=True)
        # atomic: concurrent processes building the same kernel do not see a partial file
        fd, part = tempfile.mkstemp(dir=out.parent, suffix=".part")
        os.close(fd)
        shutil.copyfile(so_tmp, part)
        os.replace(part, out)
    return True


def load(name: str, source: str, configure=None) -> ctypes.CDLL | None:
    """The compiled kernel library for C ``source`` (:data:`HEADER` is prepended),
    built once per process (and cached on disk) and passed to ``configure(lib)``
    (e.g. to set the functions' ctypes signatures) when first loaded.

    Returns None when native kernels are disabled or no compiler can build it
    (then a warning is issued once per kernel).
    """
    if not enabled():
        return None
    with _lock:
        if name not in _loaded:
            _loaded[name] = _build_and_load(name, source)
        lib = _loaded[name]
        if lib is not None and configure is not None and name not in _configured:
            configure(lib)
            _configured.add(name)
        return lib


def _build_and_load(name: str, source: str) -> ctypes.CDLL | None:
    """Build (or find in the disk cache) and load the library; None with a warning when that fails."""
    lib = None
    cc = _compiler()
    src = HEADER + source
    if cc is not None:
        try:
            version = subprocess.run([*cc.split(), "--version"], capture_output=True, text=True,
                                     timeout=60).stdout.splitlines()[:1]
        except (OSError, subprocess.TimeoutExpired):
            version = []
        key = hashlib.sha256("\0".join([src, cc, *version, _cpu_id(), "v1"]).encode()).hexdigest()[:24]
        path = _cache_dir() / f"{name}-{key}.so"
        try:
            if path.exists() or _build(cc, src, path):
                lib = ctypes.CDLL(str(path))
        except OSError:
            lib = None
    if lib is None:
        warnings.warn(
            f"could not build the native kernel {name!r} (C compiler: {cc!r}); using the "
            "slower torch implementation", RuntimeWarning, stacklevel=4)
    return lib


def ptr(t: torch.Tensor):
    """ctypes double pointer to the data of contiguous float64 tensor ``t``."""
    if t.dtype != torch.float64 or not t.is_contiguous():
        raise ValueError(f"expected a contiguous float64 tensor, got {t.dtype}, strides {t.stride()}")
    return ctypes.cast(t.data_ptr(), ctypes.POINTER(ctypes.c_double))


def parallel_ranges(fn, n: int, workers: int, grain: int = 1024) -> None:
    """Call ``fn(start, stop)`` over ``[0, n)`` split into about ``4 * workers`` pieces.

    ``fn`` should call into a kernel (ctypes releases the GIL), so ``workers``
    threads run on as many cores. One persistent pool serves all calls.
    """
    global _pool, _pool_size
    workers = max(1, int(workers))
    if workers == 1 or n <= grain:
        fn(0, n)
        return
    pieces = min(4 * workers, max(1, n // grain))
    step = -(-n // pieces)
    with _lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="sb-native")
            _pool_size = workers
        pool = _pool
    futs = [pool.submit(fn, s, min(n, s + step)) for s in range(0, n, step)]
    for f in futs:
        f.result()
