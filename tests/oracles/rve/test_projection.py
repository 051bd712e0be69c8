"""The compatibility projection, the reference-medium preconditioner and the
preconditioned solve, against their defining properties."""

import math

import numpy as np
import pytest
import torch

from oracles.rve.fft import fftw_available
from oracles.rve.fields import ComponentBasis, DenseTangent
from oracles.rve.laws import IsotropicElastic
from oracles.rve.projection import Projection, ReferenceMedium, field_norm, solve_fluctuation
from oracles.rve.solver import FFTSolver

DT = torch.float64
CASES = [("small", (9, 8)), ("small", (5, 6, 7)), ("finite", (7, 7)), ("finite", (5, 4, 5))]


def random_fields(kind, shape, batch=(2,), seed=0):
    k = len(shape)
    m = k * (k + 1) // 2 if kind == "small" else k * k
    return torch.randn(*batch, m, *shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def spectral_gradient(u: torch.Tensor, k: int) -> torch.Tensor:
    """``k x k x *grid`` gradient ``du_i/dx_j`` of a periodic ``k x *grid``
    displacement by numpy's FFT (unit voxels: wave number f / n), Nyquist modes dropped."""
    shape = u.shape[1:]
    uh = np.fft.fftn(u.numpy(), axes=tuple(range(1, k + 1)))
    grads = np.zeros((k, k, *shape))
    for j, n in enumerate(shape):
        f = np.fft.fftfreq(n, 1.0 / n)
        if n % 2 == 0:
            f[np.abs(f) == n // 2] = 0.0
        sh = [1] * k
        sh[j] = -1
        d = 2j * math.pi * f.reshape(sh) / n
        for i in range(k):
            grads[i, j] = np.fft.ifftn(uh[i] * d, axes=tuple(range(k))).real
    return torch.from_numpy(grads)


@pytest.mark.parametrize("kind, shape", CASES)
def test_projection_is_an_orthogonal_projector_that_removes_the_mean(kind, shape):
    k = len(shape)
    G = Projection(shape, ComponentBasis(kind, k), fft="scipy")
    x, y = random_fields(kind, shape, seed=1), random_fields(kind, shape, seed=2)
    Gx = G(x)
    torch.testing.assert_close(G(Gx), Gx, rtol=0, atol=1e-12)  # idempotent
    nd = tuple(range(1, x.dim()))
    torch.testing.assert_close((Gx * y).sum(nd), (x * G(y)).sum(nd), rtol=1e-12, atol=1e-12)  # self-adjoint
    assert Gx.mean(tuple(range(-k, 0))).abs().max() < 1e-14  # zero mean
    const = torch.ones_like(x)
    assert G(const).abs().max() < 1e-14


@pytest.mark.parametrize("kind, shape", [("small", (9, 7)), ("small", (5, 5, 5)), ("finite", (9, 7)), ("finite", (5, 5, 5))])
def test_projection_keeps_compatible_fields(kind, shape):
    """The (symmetrized) gradient of a smooth periodic displacement is
    compatible: ``G`` returns it unchanged."""
    k = len(shape)
    basis = ComponentBasis(kind, k)
    g = torch.Generator().manual_seed(4)
    u = torch.randn(k, *shape, generator=g, dtype=DT)
    H = spectral_gradient(u, k)  # k x k x *grid
    T = H.movedim(0, -1).movedim(0, -1)  # *grid x k x k
    x = basis.vec(T).movedim(-1, 0).unsqueeze(0)  # 1 x m x *grid
    G = Projection(shape, basis, fft="scipy")
    torch.testing.assert_close(G(x), x, rtol=0, atol=1e-11)


@pytest.mark.parametrize("kind, k", [("small", 2), ("small", 3), ("finite", 2), ("finite", 3)])
def test_reference_inner_product_is_u_dot_C0_v(kind, k):
    """The CG inner product <u, C0 v> (traces, or the Gram matrix of the
    components in finite strain) equals the plain dot product of u with
    C0 v applied voxel by voxel, and is symmetric in u and v."""
    u = random_fields(kind, (5,) * k, batch=(2, 3), seed=11)
    v = random_fields(kind, (5,) * k, batch=(2, 3), seed=12)
    ref = ReferenceMedium(kind, k, 1.7)
    got = ref.inner(u, v, k + 1)
    want = (u * ref.apply_C0(v)).sum(tuple(range(2, u.dim())))
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)
    torch.testing.assert_close(ref.inner(v, u, k + 1), got, rtol=1e-13, atol=0)


@pytest.mark.parametrize("kind, shape", CASES)
def test_reference_green_operator_inverts_the_reference_medium_on_compatible_fields(kind, shape):
    """``Gamma0 C0 e = e`` for compatible zero-mean ``e``: the Green operator
    of the reference medium is the inverse of ``G C0 G`` there."""
    k = len(shape)
    G = Projection(shape, ComponentBasis(kind, k), fft="scipy")
    ref = ReferenceMedium(kind, k, 0.8)
    e = G(random_fields(kind, shape, seed=5))
    torch.testing.assert_close(G(ref.apply_C0(e), ref.coef), e, rtol=0, atol=1e-12)


def test_preconditioned_solve_meets_the_unpreconditioned_tolerance():
    """The stopping bound ||r||^2 <= factor <z, C0 z>: the true residual of
    G K dX = -G s, recomputed independently, meets tol ||G s||, for good and
    poor reference media alike."""
    g = torch.Generator().manual_seed(5)
    k, N, tol = 2, 11, 1e-6
    pm = np.zeros((N, N), dtype=int)
    pm[3:8, 2:9] = 1
    s = FFTSolver(pm, [IsotropicElastic(1.0, 0.2), IsotropicElastic(30.0, 0.45)], cg_tol=tol)
    Kiso = s._linear_tangent()
    units = torch.eye(s.m, dtype=DT)[None, :, :, None, None].expand(1, s.m, s.m, N, N)
    K = Kiso(units)[0].transpose(0, 1).unsqueeze(0).contiguous()  # 1 x m x m x grid, column J = K e_J
    Kop = DenseTangent(K)
    for rho in (-0.5, 0.0, 1.0, 4.0):
        src = torch.randn(1, 2, s.m, N, N, generator=g, dtype=DT)
        dX, it, rel = solve_fluctuation(s.G, Kop, src, ReferenceMedium("small", k, rho), tol, 1000)
        r = s.G(Kop(dX)) + s.G(src)
        true_rel = field_norm(r, k) / field_norm(s.G(src), k)
        # FFT rounding (~1e-16 of ||G s||) is ~1e-10 of a residual at 1e-6
        assert (true_rel <= tol).all() and (true_rel <= rel * (1 + 1e-8)).all()
    dX0, it0, _ = solve_fluctuation(s.G, Kop, src, None, tol, 1000)  # plain CG, same answer
    torch.testing.assert_close(dX0, dX, rtol=0, atol=1e-5 * dX.abs().max().item())


def test_reference_fit_is_exact_for_isotropic_tangents():
    """:meth:`ReferenceMedium.fit` reads lambda and mu back from isotropic
    tangents: two phases with one Poisson ratio give the geometric-mean
    reference, whose preconditioned condition number is the stiffness contrast."""
    k = 3
    basis = ComponentBasis("small", k)
    lam_mu = [(IsotropicElastic(1.0, 0.3).lam, IsotropicElastic(1.0, 0.3).mu),
              (IsotropicElastic(10.0, 0.3).lam, IsotropicElastic(10.0, 0.3).mu)]
    mats = torch.stack([basis.mat(IsotropicElastic(E, 0.3).stiffness(k, DT, "cpu")) for E in (1.0, 10.0)])
    K = mats.permute(1, 2, 0).reshape(1, 6, 6, 2, 1, 1)
    fitted = ReferenceMedium.fit("small", k, K)
    lam = torch.tensor([lm[0] for lm in lam_mu], dtype=DT)
    mu = torch.tensor([lm[1] for lm in lam_mu], dtype=DT)
    direct = ReferenceMedium.from_moduli("small", k, lam, mu)
    assert fitted.rho == pytest.approx(direct.rho, rel=1e-12)
    # same Poisson ratio: lambda0 / mu0 = lambda / mu of either phase
    assert fitted.rho == pytest.approx(2 * lam[0].item() / (2 * mu[0].item()), rel=1e-12)


@pytest.mark.skipif(not fftw_available(), reason="pyFFTW is not installed")
@pytest.mark.parametrize("kind, shape", [("small", (31, 31)), ("small", (131, 131)), ("finite", (11, 11, 11)),
                                         ("small", (9, 9, 9))])
def test_fftw_chunked_projection_equals_pocketfft(kind, shape):
    """FFTW's plans transform c of the m components at a time (c = m on small
    grids, 1 on large ones): on a batch of random fields the projection and
    the reference Green operator equal pocketfft's."""
    k = len(shape)
    basis = ComponentBasis(kind, k)
    x = random_fields(kind, shape, batch=(2, 3), seed=3)
    G = {f: Projection(shape, basis, "cpu", DT, fft=f) for f in ("fftw", "scipy")}
    assert G["fftw"].backend == "fftw"
    for coef in (None, -0.4):
        torch.testing.assert_close(G["fftw"](x, coef), G["scipy"](x, coef), rtol=0, atol=1e-13)
    a, b = G["fftw"].apply(x, (None, -0.4))
    torch.testing.assert_close(a, G["scipy"](x), rtol=0, atol=1e-13)
    torch.testing.assert_close(b, G["scipy"](x, -0.4), rtol=0, atol=1e-13)
