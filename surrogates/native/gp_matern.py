r"""Fused posterior mean and input Jacobian of independent ARD Matérn-5/2 GPs.

For output ``j`` with scaled inputs ``z = x * x_mul_j - x_shift_j`` (the input
normalization and ``sqrt(5) / l_j`` folded together), training inputs ``Z_j``
(``N x d``, same scaling), ``rho = |z - z_i|`` and mean weights
``a_i = s_j alpha_ji`` (output scale times ``A^-1 (y - c)``):

.. math::

    m_j(z) = c_j + \sum_i a_i (1 + \rho + \rho^2/3) e^{-\rho}, \qquad
    \frac{\partial m_j}{\partial z} = \tfrac13 \Big(\sum_i a_i p_i z_i
        - z \sum_i a_i p_i\Big), \quad p_i = (1 + \rho_i) e^{-\rho_i},

then un-standardized (``y_mean + y_std m``) and chained through the input
scaling (``jac_mul = y_std / 3 * x_mul``). One pass over the training points
per test point and output, vectorized over training points, nothing stored:
``O(N d)`` work per point and output with the ``N x d`` training block in
cache. The training arrays are padded to a multiple of the vector length with
zero weights.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from surrogates.native import load, parallel_ranges, ptr

__all__ = ["available", "prepare", "mean_jacobian"]

_SOURCE = r"""
/* training points per block, in three passes through a small buffer: the
   squared distances (z in d registers), then the weights a_i p_i (sqrt, exp
   and their constants in registers), then the d Jacobian sums (each weight
   loaded once for the d accumulators: 12-15 % faster than a pass per
   component). One pass doing all held 2 d + 2 vector accumulators and the
   exp's constants, far more than AVX2's 16 registers for d = 9: spills and
   reloads cost half the time. */
#define TB 64
INLINE void gp_point(const int d, const int64_t m, const int64_t Np, const double* x,
                     const double* x_mul, const double* x_shift, const double* Zt,
                     const double* alpha, const double* jac_mul, const double* cst,
                     const double* y_mean, const double* y_std, double* mean_out,
                     double* jac_out)
{
    double buf[TB] __attribute__((aligned(64)));
    for (int64_t j = 0; j < m; j++) {
        double z[16];
        vd zv[16], accT[16];
        for (int a = 0; a < d; a++) {
            z[a] = x[a] * x_mul[j * d + a] - x_shift[j * d + a];
            zv[a] = vbcast(z[a]);
            accT[a] = vbcast(0.0);
        }
        vd accM = vbcast(0.0), accS = vbcast(0.0);
        const vd third = vbcast(1.0 / 3.0), one = vbcast(1.0);
        const double* Zj = Zt + j * d * Np;
        const double* al = alpha + j * Np;
        for (int64_t t0 = 0; t0 < Np; t0 += TB) {
            const int64_t tb = Np - t0 < TB ? Np - t0 : TB;
            for (int64_t t = 0; t < tb; t += VL) {
                vd r2 = vbcast(0.0);
                for (int a = 0; a < d; a++) {
                    vd df = zv[a] - vload(Zj + a * Np + t0 + t);
                    r2 += df * df;
                }
                vstore(buf + t, r2);
            }
            for (int64_t t = 0; t < tb; t += VL) {
                vd r2 = vload(buf + t);
                vd rho = vsqrt(r2);
                vd e = vexp_nonpos(-rho);
                vd p = (one + rho) * e;
                vd av = vload(al + t0 + t);
                vd ap = av * p;
                accM += av * (p + r2 * e * third);
                accS += ap;
                vstore(buf + t, ap);
            }
            for (int64_t t = 0; t < tb; t += VL) {
                vd w = vload(buf + t);
                for (int a = 0; a < d; a++) accT[a] += w * vload(Zj + a * Np + t0 + t);
            }
        }
        double S = vsum(accS);
        mean_out[j] = y_mean[j] + y_std[j] * (cst[j] + vsum(accM));
        for (int a = 0; a < d; a++) jac_out[j * d + a] = (vsum(accT[a]) - S * z[a]) * jac_mul[j * d + a];
    }
}

/* one lengthscale vector for all m outputs: the kernel terms of a block of
   training points (p_i and k_i) are computed once into two buffers, then each
   output's sums run over them with its own weights. Per output the d + 2
   accumulators stay in registers for the block and in memory between blocks. */
#define TBS 128
INLINE void gp_point_shared(const int d, const int64_t m, const int64_t Np, const double* x,
                            const double* x_mul, const double* x_shift, const double* Zt,
                            const double* alpha, const double* jac_mul, const double* cst,
                            const double* y_mean, const double* y_std, double* mean_out,
                            double* jac_out)
{
    double bufP[TBS] __attribute__((aligned(64)));
    double bufK[TBS] __attribute__((aligned(64)));
    double z[16];
    vd zv[16], accM[16], accS[16], accT[16 * 16];
    for (int a = 0; a < d; a++) {
        z[a] = x[a] * x_mul[a] - x_shift[a];
        zv[a] = vbcast(z[a]);
    }
    for (int64_t j = 0; j < m; j++) {
        accM[j] = vbcast(0.0);
        accS[j] = vbcast(0.0);
        for (int a = 0; a < d; a++) accT[j * 16 + a] = vbcast(0.0);
    }
    const vd third = vbcast(1.0 / 3.0), one = vbcast(1.0);
    for (int64_t t0 = 0; t0 < Np; t0 += TBS) {
        const int64_t tb = Np - t0 < TBS ? Np - t0 : TBS;
        for (int64_t t = 0; t < tb; t += VL) {
            vd r2 = vbcast(0.0);
            for (int a = 0; a < d; a++) {
                vd df = zv[a] - vload(Zt + a * Np + t0 + t);
                r2 += df * df;
            }
            vd rho = vsqrt(r2);
            vd e = vexp_nonpos(-rho);
            vd p = (one + rho) * e;
            vstore(bufP + t, p);
            vstore(bufK + t, p + r2 * e * third);
        }
        for (int64_t j = 0; j < m; j++) {
            const double* al = alpha + j * Np + t0;
            vd aM = accM[j], aS = accS[j], aT[16];
            for (int a = 0; a < d; a++) aT[a] = accT[j * 16 + a];
            for (int64_t t = 0; t < tb; t += VL) {
                vd av = vload(al + t);
                vd w = av * vload(bufP + t);
                aM += av * vload(bufK + t);
                aS += w;
                for (int a = 0; a < d; a++) aT[a] += w * vload(Zt + a * Np + t0 + t);
            }
            accM[j] = aM;
            accS[j] = aS;
            for (int a = 0; a < d; a++) accT[j * 16 + a] = aT[a];
        }
    }
    for (int64_t j = 0; j < m; j++) {
        double S = vsum(accS[j]);
        mean_out[j] = y_mean[j] + y_std[j] * (cst[j] + vsum(accM[j]));
        for (int a = 0; a < d; a++)
            jac_out[j * d + a] = (vsum(accT[j * 16 + a]) - S * z[a]) * jac_mul[j * d + a];
    }
}

/* the exported entries: a range of points, each through a point kernel;
   literal d for the common cases so the compiler unrolls the d-loops */
#define GP_ENTRY(name, point, max_m)                                                           \
int name(int64_t start, int64_t stop, int64_t d, int64_t m, int64_t Np, const double* X,        \
         const double* x_mul, const double* x_shift, const double* Zt, const double* alpha,     \
         const double* jac_mul, const double* cst, const double* y_mean, const double* y_std,   \
         double* mean_out, double* jac_out)                                                     \
{                                                                                               \
    if (d < 1 || d > 16 || m < 1 || m > (max_m) || Np % VL != 0) return -1;                     \
    for (int64_t i = start; i < stop; i++) {                                                    \
        const double* x = X + i * d;                                                            \
        double* mo = mean_out + i * m;                                                          \
        double* jo = jac_out + i * m * d;                                                       \
        if (d == 4) point(4, m, Np, x, x_mul, x_shift, Zt, alpha, jac_mul, cst, y_mean, y_std, mo, jo); \
        else if (d == 9) point(9, m, Np, x, x_mul, x_shift, Zt, alpha, jac_mul, cst, y_mean, y_std, mo, jo); \
        else point((int)d, m, Np, x, x_mul, x_shift, Zt, alpha, jac_mul, cst, y_mean, y_std, mo, jo); \
    }                                                                                           \
    return 0;                                                                                   \
}

/* independent outputs: Zt is m x d x Np, x_mul and x_shift m x d */
GP_ENTRY(sb_gp_mean_jac, gp_point, INT64_MAX)
/* shared lengthscales: Zt is d x Np, x_mul and x_shift d (one scaling) */
GP_ENTRY(sb_gp_mean_jac_shared, gp_point_shared, 16)
"""

def _configure(lib) -> None:
    for fn in (lib.sb_gp_mean_jac, lib.sb_gp_mean_jac_shared):
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int64] * 5 + [ctypes.POINTER(ctypes.c_double)] * 11


def _library():
    return load("gp_matern", _SOURCE, _configure)


def available() -> bool:
    """True when the kernel compiled (or was cached) and native kernels are enabled."""
    from surrogates.native import enabled

    return enabled() and _library() is not None


def prepare(Zt: Tensor, alpha_s: Tensor, x_mul: Tensor, x_shift: Tensor, jac_mul: Tensor,
            const: Tensor, y_mean: Tensor, y_std: Tensor, shared: bool = False) -> dict:
    """Kernel arrays from the GP's per-fit terms.

    Args:
        Zt: ``m x N x d`` scaled, centred training inputs.
        alpha_s: ``m x N`` output scale times ``A^-1 (y - c)``.
        x_mul, x_shift, jac_mul: ``m x (1 x) d`` input scaling, its shift and
            the Jacobian factor ``y_std / 3 * x_mul``.
        const, y_mean, y_std: ``m`` prior mean constant and output un-standardization.
        shared: the outputs share their lengthscales (``Zt``, ``x_mul`` and
            ``x_shift`` equal for all ``m``; ``m <= 16``): the kernel terms are
            then computed once per training point for all outputs.
    """
    lib = _library()
    m, N, d = Zt.shape
    if shared and m > 16:
        shared = False
    vl = lib.sb_vector_length() if lib is not None else 8
    Np = -(-N // vl) * vl
    Zp = torch.zeros(m, d, Np, dtype=torch.float64)
    Zp[:, :, :N] = Zt.transpose(1, 2)
    ap = torch.zeros(m, Np, dtype=torch.float64)
    ap[:, :N] = alpha_s
    c64 = lambda t: t.detach().to(torch.float64).reshape(m, -1).contiguous()  # noqa: E731
    x_mul, x_shift = c64(x_mul), c64(x_shift)
    if shared:  # one copy of the training block and the input scaling
        Zp, x_mul, x_shift = Zp[0].contiguous(), x_mul[0].contiguous(), x_shift[0].contiguous()
    return {"m": m, "d": d, "Np": Np, "shared": shared, "Zt": Zp, "alpha": ap, "x_mul": x_mul,
            "x_shift": x_shift, "jac_mul": c64(jac_mul), "const": c64(const).reshape(m),
            "y_mean": c64(y_mean).reshape(m), "y_std": c64(y_std).reshape(m)}


def mean_jacobian(prep: dict, X: Tensor, workers: int = 1) -> tuple[Tensor, Tensor]:
    """Posterior mean ``n x m`` and its Jacobian ``n x m x d`` at ``X`` (``n x d``, original units).

    ``workers`` threads share the points (the kernel runs without the GIL).
    """
    lib = _library()
    if lib is None:
        raise RuntimeError("the native GP kernel is not available")
    m, d = prep["m"], prep["d"]
    X = X.detach().to(torch.float64).contiguous()
    if X.dim() != 2 or X.shape[1] != d:
        raise ValueError(f"X must be n x {d}, got shape {tuple(X.shape)}")
    n = X.shape[0]
    mean = torch.empty(n, m, dtype=torch.float64)
    jac = torch.empty(n, m, d, dtype=torch.float64)
    args = [ptr(t) for t in (X, prep["x_mul"], prep["x_shift"], prep["Zt"], prep["alpha"],
                             prep["jac_mul"], prep["const"], prep["y_mean"], prep["y_std"],
                             mean, jac)]

    fn = lib.sb_gp_mean_jac_shared if prep.get("shared") else lib.sb_gp_mean_jac

    def run(start: int, stop: int) -> None:
        rc = fn(start, stop, d, m, prep["Np"], *args)
        if rc != 0:
            raise RuntimeError(f"native GP kernel failed (code {rc}) for d = {d}, m = {m}")

    parallel_ranges(run, n, workers, grain=256)
    return mean, jac
