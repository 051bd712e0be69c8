r"""Fused stress, tangent and ensemble variance of invariant-based energy networks.

The same mathematics as :class:`surrogates.neural.fast.FastHyperelastic` (and
:class:`~surrogates.neural.energy.InvariantEnergy`, against which both are
tested), in one C loop over blocks of ``VL`` deformation gradients with every
scalar of the per-point algorithm a vector of ``VL`` points:

1. invariants ``I`` of ``C = F^T F`` and ``dI/dF`` (isotropic ``I1, I2, J``;
   transverse ``+ I4, I5``; cubic ``+ K1, K2``);
2. per member (two softplus layers, input transform and shift folded into the
   weights, optional skip weights ``Wx`` of the input-convex variant): the
   gradient ``g = W0^T (s1 * W1^T (w t1)) + Wx^T (w t1)`` and the Hessian
   ``W0^T diag(u s1 (1 - s1)) W0 + Jm^T diag(w t1 (1 - t1)) Jm`` with
   ``Jm = W1 diag(s1) W0 + Wx`` (``K = W1 (x) W0`` precomputed so ``Jm`` is
   one multiply-add per weight), normalization ``s (g - corr)`` and growth;
   the sigmoids from ``e = exp(-|a|)`` (``s (1 - s) = e / (1 + e)^2``);
3. ensemble means of ``g`` and ``H`` (stress and tangent are linear in them,
   so they are the exact derivatives of the mean energy), the calibrated
   variance of the members' stresses;
4. ``P = sum_a g_a dI_a`` and the tangent
   ``sum_ab H_ab dI_a (x) dI_b + sum_a g_a d^2 I_a / dF dF`` with the invariant
   Hessians in closed form.

Everything stays in registers or L1; the outputs are written once, point-major
(``n x k x k``, ``n x k x k x k x k``).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from oracles.exceptions import InvalidInput
from surrogates.native import enabled, load, parallel_ranges, ptr

__all__ = ["available", "NativeHyperelastic"]

#: symmetry codes of the kernel
SYM_CODE = {"isotropic": 0, "transverse": 1, "cubic": 2}
HMAX, MMAX = 64, 64

_SOURCE = r"""
#define HMAX 64
#define MMAX 64

typedef struct {
    int M, h0, h1, has_wx;
    const double *W0, *b0, *W1, *b1, *Wx, *w, *K, *W0W0, *corr, *s, *growth;
} net_t;

/* k x k x (VL points) block: invariants, their derivatives, stress, tangent, variance */
INLINE int block(const int k, const int sym, const net_t* net, const double* fib,
                 const vd* Fv, const double* vscale, double vfloor, int nvalid,
                 vd* Pv, vd* Av, vd* varv)
{
    const int kk = k * k, p = sym == 0 ? 3 : 5;
    const double extra = 3.0 - k;
    vd F[9], C[9], cof[9], FiT[9], FC[9], dI[5][9], I[5], b[9];
    for (int q = 0; q < kk; q++) F[q] = Fv[q];
    /* C = F^T F, b = F F^T */
    for (int I_ = 0; I_ < k; I_++)
        for (int J_ = 0; J_ < k; J_++) {
            vd c = F[I_] * F[J_], bb = F[I_ * k] * F[J_ * k];
            for (int i = 1; i < k; i++) { c += F[i * k + I_] * F[i * k + J_]; bb += F[I_ * k + i] * F[J_ * k + i]; }
            C[I_ * k + J_] = c;
            b[I_ * k + J_] = bb;
        }
    vd trC = C[0], sC2 = C[0] * C[0];
    for (int q = 1; q < kk; q++) sC2 += C[q] * C[q];
    for (int i = 1; i < k; i++) trC += C[i * k + i];
    vd I1 = trC + extra;
    vd I2 = 0.5 * (I1 * I1 - sC2 - extra);
    if (k == 2) {
        cof[0] = F[3]; cof[1] = -F[2]; cof[2] = -F[1]; cof[3] = F[0];
    } else {
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                int i1 = (i + 1) % 3, i2 = (i + 2) % 3, j1 = (j + 1) % 3, j2 = (j + 2) % 3;
                cof[i * 3 + j] = F[i1 * 3 + j1] * F[i2 * 3 + j2] - F[i1 * 3 + j2] * F[i2 * 3 + j1];
            }
    }
    vd J = F[0] * cof[0];
    for (int j = 1; j < k; j++) J += F[j] * cof[j];
    /* det F > 0 and finite entries (NaN fails every comparison) */
    vd fs = vabs(F[0]);
    for (int q = 1; q < kk; q++) fs += vabs(F[q]);
    for (int l = 0; l < nvalid; l++)
        if (!(J[l] > 0.0) || !(fs[l] < INFINITY)) return l + 1;
    /* padding lanes hold identities */
    vd Jinv = 1.0 / J;
    for (int q = 0; q < kk; q++) FiT[q] = cof[q] * Jinv;
    for (int i = 0; i < k; i++)
        for (int J_ = 0; J_ < k; J_++) {
            vd acc = F[i * k] * C[J_];
            for (int K_ = 1; K_ < k; K_++) acc += F[i * k + K_] * C[K_ * k + J_];
            FC[i * k + J_] = acc;
        }
    I[0] = I1; I[1] = I2; I[2] = J;
    for (int q = 0; q < kk; q++) {
        dI[0][q] = 2.0 * F[q];
        dI[1][q] = 2.0 * (I1 * F[q] - FC[q]);
        dI[2][q] = cof[q];
    }
    vd Ca[3], Fa[3], dd[3];
    if (sym == 1) {
        vd I4 = vbcast(0.0), I5 = vbcast(0.0);
        for (int i = 0; i < k; i++) {
            vd ca = C[i * k] * fib[0], fa = F[i * k] * fib[0];
            for (int j = 1; j < k; j++) { ca += C[i * k + j] * fib[j]; fa += F[i * k + j] * fib[j]; }
            Ca[i] = ca; Fa[i] = fa;
        }
        for (int i = 0; i < k; i++) { I4 += fib[i] * Ca[i]; I5 += Ca[i] * Ca[i]; }
        I[3] = I4; I[4] = I5;
        for (int i = 0; i < k; i++) {
            vd fca = F[i * k] * Ca[0];
            for (int j = 1; j < k; j++) fca += F[i * k + j] * Ca[j];
            for (int j = 0; j < k; j++) {
                dI[3][i * k + j] = 2.0 * Fa[i] * fib[j];
                dI[4][i * k + j] = 2.0 * (Fa[i] * Ca[j] + fca * fib[j]);
            }
        }
    } else if (sym == 2) {
        vd K1 = vbcast(extra), K2 = vbcast(extra);
        for (int i = 0; i < k; i++) { dd[i] = C[i * k + i]; K1 += dd[i] * dd[i]; K2 += dd[i] * dd[i] * dd[i]; }
        I[3] = K1; I[4] = K2;
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) {
                dI[3][i * k + j] = 4.0 * F[i * k + j] * dd[j];
                dI[4][i * k + j] = 6.0 * F[i * k + j] * (dd[j] * dd[j]);
            }
    }

    /* ---- networks: mean gradient and Hessian w.r.t. I, members' gradients */
    vd g[5], H[5][5], gm[MMAX][5];
    for (int a = 0; a < p; a++) { g[a] = vbcast(0.0); for (int c = 0; c < p; c++) H[a][c] = vbcast(0.0); }
    const int h0 = net->h0, h1 = net->h1, M = net->M;
    const int np_ = p * (p + 1) / 2;
    vd s1[HMAX], z1[HMAX], d1[HMAX], u[HMAX], wt[HMAX], cc[HMAX];
    for (int m = 0; m < M; m++) {
        const double* W0 = net->W0 + (int64_t)m * h0 * p;
        const double* b0 = net->b0 + (int64_t)m * h0;
        const double* W1 = net->W1 + (int64_t)m * h1 * h0;
        const double* b1 = net->b1 + (int64_t)m * h1;
        const double* Wx = net->Wx + (int64_t)m * h1 * p;
        const double* w = net->w + (int64_t)m * h1;
        const double* K = net->K + (int64_t)m * h1 * p * h0;
        const double* W0W0 = net->W0W0 + (int64_t)m * h0 * np_;
        for (int j = 0; j < h0; j++) {
            vd a1 = vbcast(b0[j]);
            for (int a = 0; a < p; a++) a1 += W0[j * p + a] * I[a];
            vd e = vexp_nonpos(-vabs(a1));
            vd r = 1.0 / (1.0 + e);
            s1[j] = vselect(a1 >= 0.0, r, e * r);     /* sigmoid(a1) */
            d1[j] = e * r * r;                         /* sigmoid'(a1) */
            z1[j] = vmax(a1, vbcast(0.0)) + vlog1p_unit(e); /* softplus(a1) */
            u[j] = vbcast(0.0);
        }
        for (int h = 0; h < h1; h++) {
            /* two partial sums: half the dependency chain */
            vd a2 = vbcast(b1[h]), a2b = vbcast(0.0);
            int j = 0;
            for (; j + 1 < h0; j += 2) { a2 += W1[h * h0 + j] * z1[j]; a2b += W1[h * h0 + j + 1] * z1[j + 1]; }
            if (j < h0) a2 += W1[h * h0 + j] * z1[j];
            a2 += a2b;
            if (net->has_wx) for (int a = 0; a < p; a++) a2 += Wx[h * p + a] * I[a];
            vd e = vexp_nonpos(-vabs(a2));
            vd r = 1.0 / (1.0 + e);
            wt[h] = w[h] * vselect(a2 >= 0.0, r, e * r);  /* w sigmoid(a2) */
            cc[h] = w[h] * (e * r * r);                   /* w sigmoid'(a2) */
            for (int j = 0; j < h0; j++) u[j] += W1[h * h0 + j] * wt[h];
        }
        vd gg[5], HH[5][5];
        for (int a = 0; a < p; a++) { gg[a] = vbcast(0.0); for (int c = a; c < p; c++) HH[a][c] = vbcast(0.0); }
        for (int j = 0; j < h0; j++) {
            vd su = s1[j] * u[j], du = d1[j] * u[j];
            int q = 0;
            for (int a = 0; a < p; a++) {
                gg[a] += W0[j * p + a] * su;
                for (int c = a; c < p; c++, q++) HH[a][c] += W0W0[j * np_ + q] * du;
            }
        }
        /* Jm rows two hidden units at a time: 2p independent accumulation chains */
        for (int h = 0; h < h1; h += 2) {
            const int nh = h + 1 < h1 ? 2 : 1;
            vd Jm[2][5];
            for (int t = 0; t < nh; t++)
                for (int a = 0; a < p; a++) Jm[t][a] = vbcast(net->has_wx ? Wx[(h + t) * p + a] : 0.0);
            const double* K0 = K + (int64_t)h * p * h0;
            if (nh == 2) {
                for (int j = 0; j < h0; j++)
                    for (int a = 0; a < p; a++) {
                        Jm[0][a] += K0[a * h0 + j] * s1[j];
                        Jm[1][a] += K0[(p + a) * h0 + j] * s1[j];
                    }
            } else {
                for (int j = 0; j < h0; j++)
                    for (int a = 0; a < p; a++) Jm[0][a] += K0[a * h0 + j] * s1[j];
            }
            for (int t = 0; t < nh; t++) {
                if (net->has_wx) for (int a = 0; a < p; a++) gg[a] += Wx[(h + t) * p + a] * wt[h + t];
                for (int a = 0; a < p; a++) {
                    vd cj = cc[h + t] * Jm[t][a];
                    for (int c = a; c < p; c++) HH[a][c] += cj * Jm[t][c];
                }
            }
        }
        const double sm = net->s[m], gro = net->growth[m];
        for (int a = 0; a < p; a++) {
            gg[a] = sm * (gg[a] - net->corr[m * p + a]);
            for (int c = a; c < p; c++) HH[a][c] = sm * HH[a][c];
        }
        if (gro != 0.0) {
            vd r = J + Jinv - 2.0, dJ = 1.0 - Jinv * Jinv;
            gg[2] += gro * 2.0 * r * dJ;
            HH[2][2] += gro * 2.0 * (dJ * dJ + r * 2.0 * Jinv * Jinv * Jinv);
        }
        for (int a = 0; a < p; a++) {
            gm[m][a] = gg[a];
            g[a] += gg[a];
            for (int c = a; c < p; c++) H[a][c] += HH[a][c];
        }
    }
    const double invM = 1.0 / M;
    for (int a = 0; a < p; a++) {
        g[a] *= invM;
        for (int c = a; c < p; c++) { H[a][c] *= invM; H[c][a] = H[a][c]; }
    }

    /* ---- stress and variance */
    for (int q = 0; q < kk; q++) {
        vd acc = g[0] * dI[0][q];
        for (int a = 1; a < p; a++) acc += g[a] * dI[a][q];
        Pv[q] = acc;
    }
    if (vscale != 0 && M > 1) {
        vd v = vbcast(0.0);
        for (int q = 0; q < kk; q++) {
            vd sq = vbcast(0.0);
            for (int m = 0; m < M; m++) {
                vd dp = (gm[m][0] - g[0]) * dI[0][q];
                for (int a = 1; a < p; a++) dp += (gm[m][a] - g[a]) * dI[a][q];
                sq += dp * dp;
            }
            v += vscale[q] * sq;
        }
        *varv = v * (1.0 / ((M - 1) * (double)kk)) + vfloor;
    }

    /* ---- tangent A[iJ][kL] */
    vd Q[5][9];
    for (int a = 0; a < p; a++)
        for (int q = 0; q < kk; q++) {
            vd acc = H[a][0] * dI[0][q];
            for (int c = 1; c < p; c++) acc += H[a][c] * dI[c][q];
            Q[a][q] = acc;
        }
    const vd g2 = g[1], gJ = g[2];
    for (int q = 0; q < kk; q++) { Q[0][q] += 2.0 * g2 * F[q]; Q[2][q] += gJ * FiT[q]; }
    for (int r = 0; r < kk; r++)
        for (int q = 0; q < kk; q++) {
            vd acc = dI[0][r] * Q[0][q];
            for (int a = 1; a < p; a++) acc += dI[a][r] * Q[a][q];
            Av[r * kk + q] = acc;
        }
    vd S[9], D[9];
    vd sdiag = 2.0 * g[0] + 2.0 * g2 * I1;
    for (int J_ = 0; J_ < k; J_++)
        for (int L = 0; L < k; L++) {
            S[J_ * k + L] = -2.0 * g2 * C[J_ * k + L] + (J_ == L ? sdiag : vbcast(0.0));
            D[J_ * k + L] = -2.0 * g2 * b[J_ * k + L];
        }
    vd V[9];
    if (sym == 1) {
        vd g4 = g[3], g5 = g[4];
        for (int J_ = 0; J_ < k; J_++)
            for (int L = 0; L < k; L++) {
                S[J_ * k + L] += 2.0 * g4 * (fib[J_] * fib[L]) + 2.0 * g5 * (fib[J_] * Ca[L] + Ca[J_] * fib[L]);
                D[J_ * k + L] += 2.0 * g5 * Fa[J_] * Fa[L];
                V[J_ * k + L] = 2.0 * g5 * Fa[J_] * fib[L];
            }
        for (int i = 0; i < k; i++)
            for (int J_ = 0; J_ < k; J_++)
                for (int kx = 0; kx < k; kx++)
                    for (int L = 0; L < k; L++)
                        Av[(i * k + J_) * kk + kx * k + L] += 2.0 * g5 * b[i * k + kx] * (fib[J_] * fib[L]);
    } else if (sym == 2) {
        for (int J_ = 0; J_ < k; J_++) S[J_ * k + J_] += 4.0 * g[3] * dd[J_] + 6.0 * g[4] * dd[J_] * dd[J_];
        for (int J_ = 0; J_ < k; J_++) {
            vd wJ = 8.0 * g[3] + 24.0 * g[4] * dd[J_];
            for (int i = 0; i < k; i++)
                for (int kx = 0; kx < k; kx++)
                    Av[(i * k + J_) * kk + kx * k + J_] += wJ * F[i * k + J_] * F[kx * k + J_];
        }
    }
    /* swapped terms X_iL Y_kJ, delta_ik S_JL, delta_JL D_ik */
    for (int i = 0; i < k; i++)
        for (int J_ = 0; J_ < k; J_++)
            for (int kx = 0; kx < k; kx++)
                for (int L = 0; L < k; L++) {
                    vd t = -2.0 * g2 * F[i * k + L] * F[kx * k + J_] - gJ * cof[i * k + L] * FiT[kx * k + J_];
                    if (sym == 1) t += V[i * k + L] * F[kx * k + J_] + F[i * k + L] * V[kx * k + J_];
                    if (i == kx) t += S[J_ * k + L];
                    if (J_ == L) t += D[i * k + kx];
                    Av[(i * k + J_) * kk + kx * k + L] += t;
                }
    return 0;
}

INLINE int run(const int k, const int sym, int64_t start, int64_t stop, const net_t* net,
               const double* fib, const double* F, const double* vscale, double vfloor,
               double* P, double* A, double* var, int64_t* bad)
{
    const int kk = k * k, k4 = kk * kk;
    vd Fv[9], Pv[9], Av[81], varv = vbcast(0.0);
    for (int64_t i0 = start; i0 < stop; i0 += VL) {
        int nv = stop - i0 < VL ? (int)(stop - i0) : VL;
        for (int q = 0; q < kk; q++) {
            double eye = (q % (k + 1)) == 0 ? 1.0 : 0.0;
            for (int l = 0; l < VL; l++) Fv[q][l] = l < nv ? F[(i0 + l) * kk + q] : eye;
        }
        int rc = block(k, sym, net, fib, Fv, vscale, vfloor, nv, Pv, Av, &varv);
        if (rc) { *bad = i0 + rc - 1; return 1; }
        for (int l = 0; l < nv; l++) {
            double* Pp = P + (i0 + l) * kk;
            double* Ap = A + (i0 + l) * k4;
            for (int q = 0; q < kk; q++) Pp[q] = Pv[q][l];
            for (int q = 0; q < k4; q++) Ap[q] = Av[q][l];
            if (var) var[i0 + l] = varv[l];
        }
    }
    return 0;
}

/* returns 0, 1 (bad point at *bad) or -1 (unsupported sizes) */
int sb_hyper(int64_t start, int64_t stop, int k, int sym, int M, int h0, int h1, int has_wx,
             const double* W0, const double* b0, const double* W1, const double* b1,
             const double* Wx, const double* w, const double* K, const double* W0W0,
             const double* corr, const double* s, const double* growth, const double* fib,
             const double* F, const double* vscale, double vfloor, double* P, double* A,
             double* var, int64_t* bad)
{
    if (M < 1 || M > MMAX || h0 < 1 || h0 > HMAX || h1 < 1 || h1 > HMAX) return -1;
    net_t net = {M, h0, h1, has_wx, W0, b0, W1, b1, Wx, w, K, W0W0, corr, s, growth};
    if (k == 2 && sym == 0) return run(2, 0, start, stop, &net, fib, F, vscale, vfloor, P, A, var, bad);
    if (k == 3 && sym == 0) return run(3, 0, start, stop, &net, fib, F, vscale, vfloor, P, A, var, bad);
    if (k == 2 && sym == 1) return run(2, 1, start, stop, &net, fib, F, vscale, vfloor, P, A, var, bad);
    if (k == 3 && sym == 1) return run(3, 1, start, stop, &net, fib, F, vscale, vfloor, P, A, var, bad);
    if (k == 2 && sym == 2) return run(2, 2, start, stop, &net, fib, F, vscale, vfloor, P, A, var, bad);
    if (k == 3 && sym == 2) return run(3, 2, start, stop, &net, fib, F, vscale, vfloor, P, A, var, bad);
    return -1;
}
"""

def _configure(lib) -> None:
    D = ctypes.POINTER(ctypes.c_double)
    lib.sb_hyper.restype = ctypes.c_int
    lib.sb_hyper.argtypes = (
        [ctypes.c_int64] * 2 + [ctypes.c_int] * 6 + [D] * 14 + [ctypes.c_double]
        + [D] * 3 + [ctypes.POINTER(ctypes.c_int64)])


def _library():
    return load("hyperelastic", _SOURCE, _configure)


def available() -> bool:
    """True when the kernel compiled (or was cached) and native kernels are enabled."""
    return enabled() and _library() is not None


class NativeHyperelastic:
    """The kernel bound to stacked member weights.

    Args:
        params: a :class:`surrogates.neural.fast._StackedParams` (``W0`` ``M x h0 x p``
            acting on raw invariants, ``b0``, ``W1``, ``b1``, ``Wx`` or None,
            ``w``, ``corr``, ``s``, ``growth``).
        dim, symmetry, fibre: the invariant set.
    """

    def __init__(self, params, dim: int, symmetry: str, fibre=None):
        f64 = lambda t: t.detach().to(torch.float64).contiguous()  # noqa: E731
        W0, W1 = f64(params.W0), f64(params.W1)
        M, h0, p = W0.shape
        h1 = W1.shape[1]
        if M > MMAX or h0 > HMAX or h1 > HMAX:
            raise ValueError(f"native kernel supports M, widths <= {MMAX}, got M={M}, hidden=({h0}, {h1})")
        self.dim, self.sym, self.M, self.h0, self.h1 = int(dim), SYM_CODE[symmetry], M, h0, h1
        self.has_wx = params.Wx is not None
        iu = torch.triu_indices(p, p)
        self.arrays = {
            "W0": W0, "b0": f64(params.b0), "W1": W1, "b1": f64(params.b1),
            "Wx": f64(params.Wx) if self.has_wx else torch.zeros(M, h1, p, dtype=torch.float64),
            "w": f64(params.w),
            # K[m, h, a, j] = W1[m, h, j] W0[m, j, a]: Jm = sum_j K s1_j
            "K": (W1[:, :, None, :] * W0.transpose(1, 2)[:, None, :, :]).contiguous(),
            # W0W0[m, j, (a, b) upper] = W0[m, j, a] W0[m, j, b]
            "W0W0": (W0[:, :, iu[0]] * W0[:, :, iu[1]]).contiguous(),
            "corr": f64(params.corr), "s": f64(params.s.reshape(M)),
            "growth": f64(params.growth.reshape(M)),
            "fib": f64(torch.as_tensor(fibre if fibre is not None else [0.0] * dim, dtype=torch.float64)),
        }

    def __call__(self, F: Tensor, variance_scale: Tensor | None, variance_floor: float,
                 workers: int = 1):
        """``P`` (``n x k x k``), tangent (``n x k x k x k x k``), variance (``n`` or None)."""
        lib = _library()
        k = self.dim
        F = F.detach().to(torch.float64).contiguous()
        n = F.shape[0]
        P = torch.empty(n, k, k, dtype=torch.float64)
        A = torch.empty(n, k, k, k, k, dtype=torch.float64)
        var = None
        vs = None
        if variance_scale is not None and self.M > 1:
            var = torch.empty(n, dtype=torch.float64)
            vs = variance_scale.detach().to(torch.float64).reshape(k * k).contiguous()
        a = self.arrays
        wargs = [ptr(a[key]) for key in ("W0", "b0", "W1", "b1", "Wx", "w", "K", "W0W0", "corr",
                                          "s", "growth", "fib")]
        null = ctypes.POINTER(ctypes.c_double)()
        bads: list[int] = []

        def work(start: int, stop: int) -> None:
            bad = ctypes.c_int64(-1)
            rc = lib.sb_hyper(start, stop, k, self.sym, self.M, self.h0, self.h1, int(self.has_wx),
                              *wargs, ptr(F), ptr(vs) if vs is not None else null,
                              float(variance_floor), ptr(P), ptr(A),
                              ptr(var) if var is not None else null, ctypes.byref(bad))
            if rc == 1:
                bads.append(bad.value)
            elif rc != 0:
                raise RuntimeError(f"native hyperelastic kernel failed (code {rc})")

        # ranges start at multiples of 8 so every kernel block is full but the last
        step = 8
        parallel_ranges(lambda s0, s1: work(s0 // step * step if s0 else 0, s1 if s1 == n else s1 // step * step),
                        n, workers, grain=2048)
        if bads:
            i = min(bads)
            J = float(torch.linalg.det(F[i]))
            raise InvalidInput(f"F must be finite with det F > 0, got det F = {J:.6g} at point {i}")
        return P, A, var
