"""Small-strain energy networks and the generic elastic-constants network."""

from __future__ import annotations

import itertools

import pytest
import torch

from surrogates.dataset import Dataset
from surrogates.neural.generic import CubicElasticEnsemble, cubic_voigt
from surrogates.neural.small_strain import (
    SmallStrainEnergy,
    SmallStrainEnsemble,
    tensor_to_voigt,
    voigt_to_tensor,
)
from surrogates.testing import SurrogateContractTests
from tests.surrogates.neural.laws import random_rotation

DT = torch.float64


def random_strain(n, dim, amp, g):
    e = amp * (2 * torch.rand(n, dim, dim, generator=g, dtype=DT) - 1)
    return 0.5 * (e + e.transpose(1, 2))


def make(dim, sym, seed):
    e = SmallStrainEnergy(dim, sym, hidden=(8, 8), seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        e.inv_scale.copy_(1e-3 + 1e-2 * torch.rand(e.inv_scale.shape, generator=g, dtype=DT))
        e.energy_scale.fill_(2.0)
    return e


def cubic_law(eps, c11, c12, c44):
    """Linear cubic elasticity in the crystal axes: sigma and tangent."""
    dim = eps.shape[-1]
    Cm = torch.zeros(dim, dim, dim, dim, dtype=DT)
    for i, j, k, l in itertools.product(range(dim), repeat=4):
        v = 0.0
        if i == j and k == l:
            v = c11 if i == k else c12
        elif (i == k and j == l) or (i == l and j == k):
            v = c44
        Cm[i, j, k, l] = v
    return torch.einsum("ijkl,nkl->nij", Cm, eps), Cm


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("dim", [2, 3])
def test_isotropy_and_cubic_symmetry(dim, seed):
    g = torch.Generator().manual_seed(seed)
    eps = random_strain(5, dim, 0.02, g)
    iso = make(dim, "isotropic", seed)
    _, s, C = iso(eps, order=2)
    Q = random_rotation(dim, g)
    _, s2, C2 = iso(Q @ eps @ Q.T, order=2)
    torch.testing.assert_close(s2, Q @ s @ Q.T, atol=1e-10, rtol=0)
    torch.testing.assert_close(C2, torch.einsum("ia,jb,kc,ld,nabcd->nijkl", Q, Q, Q, Q, C),
                               atol=1e-10, rtol=0)
    cub = make(dim, "cubic", seed)
    _, s, C = cub(eps, order=2)
    for p in itertools.permutations(range(dim)):
        sgn = torch.randint(0, 2, (dim,), generator=g).to(DT) * 2 - 1
        R = torch.eye(dim, dtype=DT)[list(p)] * sgn[:, None]
        _, s2, _ = cub(R @ eps @ R.T, order=1)
        torch.testing.assert_close(s2, R @ s @ R.T, atol=1e-10, rtol=0)
    # not vacuous: a 45-degree rotation changes a cubic response
    c, sn = 2**-0.5, 2**-0.5
    R = torch.eye(dim, dtype=DT)
    R[:2, :2] = torch.tensor([[c, -sn], [sn, c]], dtype=DT)
    _, s3, _ = cub(R @ eps @ R.T, order=1)
    assert (s3 - R @ s @ R.T).abs().max() > 1e-8


@pytest.mark.parametrize("sym", ["isotropic", "cubic"])
def test_normalization_tangent_fd_and_symmetries(sym):
    e = make(3, sym, 4)
    psi, s, _ = e(torch.zeros(1, 3, 3, dtype=DT), order=1)
    assert float(psi.detach().abs()) <= 1e-14 and float(s.detach().abs().max()) <= 1e-14
    g = torch.Generator().manual_seed(5)
    eps = random_strain(3, 3, 0.02, g)
    _, s, C = e(eps, order=2)
    C = C.detach()
    h = 1e-7
    for k, l in ((0, 0), (1, 2), (0, 2)):
        d = torch.zeros(3, 3, dtype=DT)
        # symmetric perturbation of size h in eps_kl (and eps_lk): dsigma = C : d
        d[k, l] = d[l, k] = h if k == l else h / 2
        fd = (e(eps + d, order=1)[1] - e(eps - d, order=1)[1]).detach() / (2 * h)
        an = 0.5 * (C[..., k, l] + C[..., l, k])
        assert float((fd - an).abs().max() / C.abs().max()) < 1e-6
    torch.testing.assert_close(C, C.permute(0, 3, 4, 1, 2), atol=1e-12, rtol=0)  # major
    torch.testing.assert_close(C, C.permute(0, 2, 1, 3, 4), atol=1e-12, rtol=0)  # minor


def test_learns_cubic_linear_elasticity_constants():
    """Trained on a cubic linear law, the tangent at zero strain gives C11, C12, C44."""
    g = torch.Generator().manual_seed(6)
    eps = random_strain(150, 3, 0.01, g)
    c = (1.7, 1.2, 0.75)
    sig, Cm = cubic_law(eps, *c)
    ds = Dataset(X=tensor_to_voigt(eps, 3), Y=tensor_to_voigt(sig, 3))
    model = SmallStrainEnsemble.from_dataset(
        ds, symmetry="cubic", hidden=(8, 8), num_members=1, calibration_fraction=0,
        # trained to convergence (a short L-BFGS run left C11, C44 2 % off for some seeds)
        training=dict(max_iter=60, inner_iter=25, patience=10, tol=1e-6),
    )
    _, C0 = model.stress_tangent(torch.zeros(1, 3, 3, dtype=DT))
    C0 = C0[0]
    for got, want in ((C0[0, 0, 0, 0], c[0]), (C0[0, 0, 1, 1], c[1]), (C0[0, 1, 0, 1], c[2])):
        assert abs(float(got) - want) / want < 0.02, (float(got), want)
    epst = random_strain(200, 3, 0.01, g)
    st, _ = cubic_law(epst, *c)
    pred, _ = model.stress_tangent(epst)
    assert float((pred - st).norm() / st.norm()) < 0.01


def test_voigt_roundtrip_and_errors():
    g = torch.Generator().manual_seed(0)
    eps = random_strain(4, 3, 0.1, g)
    torch.testing.assert_close(voigt_to_tensor(tensor_to_voigt(eps, 3), 3), eps)
    with pytest.raises(ValueError, match="Voigt"):
        voigt_to_tensor(torch.zeros(2, 5, dtype=DT), 3)
    with pytest.raises(ValueError, match="symmetry"):
        SmallStrainEnergy(3, "transverse")
    with pytest.raises(ValueError, match="Voigt strains"):
        SmallStrainEnsemble.from_dataset(Dataset(X=torch.zeros(4, 2), Y=torch.zeros(4, 2)))


def cubic_constants_vs_T(T):
    """Smooth temperature softening (GPa), Born stable on [0, 1500] K."""
    t = T[:, 0] / 1000.0
    return torch.stack([170 - 30 * t - 5 * t**2, 120 - 12 * t, 75 - 18 * t + 2 * t**2], -1)


def test_cubic_constants_network_accuracy_symmetry_and_stability():
    g = torch.Generator().manual_seed(7)
    T = 1500 * torch.rand(80, 1, generator=g, dtype=DT)
    ds = Dataset(X=T, Y=cubic_constants_vs_T(T))
    model = CubicElasticEnsemble.from_dataset(
        ds, hidden=(8,), num_members=3, training=dict(max_iter=15, inner_iter=25)
    )
    Tt = 1500 * torch.rand(200, 1, generator=g, dtype=DT)
    with torch.no_grad():
        mean = model.posterior(Tt).mean
    ref = cubic_constants_vs_T(Tt)
    assert float((mean - ref).norm() / ref.norm()) < 0.01
    # the stiffness is exactly cubic and Born-stable even far outside the data
    Tfar = torch.tensor([[-5000.0], [0.0], [20000.0]], dtype=DT)
    with torch.no_grad():
        C = model.stiffness(Tfar)
    torch.testing.assert_close(C, C.transpose(-1, -2))
    assert (torch.linalg.eigvalsh(C) > 0).all()
    assert torch.equal(C[:, 0, 0], C[:, 2, 2]) and torch.equal(C[:, 0, 1], C[:, 1, 2])


def test_isotropic_constants_relation():
    model = CubicElasticEnsemble(in_dim=1, symmetry="isotropic", num_members=2)
    c = model.posterior(torch.linspace(0, 1, 5, dtype=DT)[:, None]).mean.detach()
    torch.testing.assert_close(c[:, 0] - c[:, 1], 2 * c[:, 2], atol=1e-12, rtol=0)
    C = cubic_voigt(c)
    assert (torch.linalg.eigvalsh(C) > 0).all()


class TestSmallStrainContract(SurrogateContractTests):
    def make_dataset(self):
        g = torch.Generator().manual_seed(8)
        eps = random_strain(40, 2, 0.01, g)
        sig, _ = cubic_law(eps, 1.5, 0.8, 0.6)
        return Dataset(X=tensor_to_voigt(eps, 2), Y=tensor_to_voigt(sig, 2))

    def fit(self, dataset):
        return SmallStrainEnsemble.from_dataset(
            dataset, hidden=(4, 4), num_members=3, training=dict(max_iter=3, inner_iter=10)
        )


class TestCubicConstantsContract(SurrogateContractTests):
    def make_dataset(self):
        T = torch.linspace(0, 1500, 30, dtype=DT)[:, None]
        return Dataset(X=T, Y=cubic_constants_vs_T(T))

    def fit(self, dataset):
        return CubicElasticEnsemble.from_dataset(
            dataset, hidden=(4,), num_members=3, training=dict(max_iter=3, inner_iter=10)
        )


def test_known_noise_variances_are_not_used_and_say_so():
    """The ensembles fit by unweighted least squares: positive Yvar warns and changes nothing."""
    import warnings

    g = torch.Generator().manual_seed(3)
    T = 1500 * torch.rand(20, 1, generator=g, dtype=DT)
    Y = cubic_constants_vs_T(T)
    opts = dict(hidden=(4,), num_members=2, training=dict(max_iter=2, inner_iter=5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = CubicElasticEnsemble.from_dataset(Dataset(X=T, Y=Y, Yvar=torch.zeros_like(Y)), **opts)
    with pytest.warns(UserWarning, match="does not use Dataset.Yvar"):
        noisy = CubicElasticEnsemble.from_dataset(Dataset(X=T, Y=Y, Yvar=torch.full_like(Y, 4.0)), **opts)
    with torch.no_grad():
        torch.testing.assert_close(noisy.posterior(T).mean, plain.posterior(T).mean, rtol=0, atol=0)


def test_ensemble_posterior_variance_is_not_floored_absolutely_in_small_units():
    """posterior(X).variance had been rounded up to GPyTorch's 1e-10 (output units): constants
    in units 1e-9 times smaller came out with variances 3e8 times too large; predict() did not."""
    g = torch.Generator().manual_seed(4)
    T = 1500 * torch.rand(30, 1, generator=g, dtype=DT)
    Y = 1e-9 * cubic_constants_vs_T(T)
    model = CubicElasticEnsemble.from_dataset(Dataset(X=T, Y=Y), hidden=(4,), num_members=3,
                                              training=dict(max_iter=3, inner_iter=10))
    Tt = 1500 * torch.rand(7, 1, generator=g, dtype=DT)
    with torch.no_grad():
        _, var = model.predict(Tt)
        torch.testing.assert_close(model.posterior(Tt).variance, var, rtol=1e-12, atol=0)


def test_posterior_takes_integer_tensors_and_names_a_non_tensor():
    """An integer tensor is a point like any other (it had failed deep in autograd: "only Tensors
    of floating point dtype can require gradients"); a numpy array is named in one line."""
    import numpy as np

    from surrogates.neural import SmallStrainEnsemble

    g = torch.Generator().manual_seed(0)
    eps = 0.01 * torch.randn(30, 3, generator=g, dtype=torch.float64)
    sig = eps @ torch.tensor([[3.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    m = SmallStrainEnsemble.from_dataset(Dataset(X=eps, Y=sig), dim=2, num_members=2, hidden=(4,),
                                         training=dict(max_iter=2, inner_iter=5))
    Xi = torch.tensor([[0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(m.posterior(Xi).mean, m.posterior(Xi.double()).mean, rtol=0, atol=0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        m.posterior(np.zeros((1, 3)))


def test_frozen_small_strain_ensemble_keeps_the_gradient_in_x():
    """With its weights frozen (as before ``optimize_acqf``), the posterior mean's gradient
    in ``X`` is still there and equals the central finite difference (it had come back
    detached: "element 0 of tensors does not require grad")."""
    from surrogates.neural import SmallStrainEnsemble

    g = torch.Generator().manual_seed(1)
    eps = 0.01 * torch.randn(30, 3, generator=g, dtype=DT)
    sig = eps @ torch.tensor([[3.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 2.0]], dtype=DT)
    m = SmallStrainEnsemble.from_dataset(Dataset(X=eps, Y=sig), dim=2, num_members=2, hidden=(4,),
                                         training=dict(max_iter=2, inner_iter=5))
    m.requires_grad_(False)
    x0 = torch.tensor([[0.004, -0.002, 0.001]], dtype=DT)
    X = x0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m.posterior(X).mean.sum(), X)
    h = 1e-6
    with torch.no_grad():
        fd = torch.stack([(m.posterior(x0 + h * e).mean.sum() - m.posterior(x0 - h * e).mean.sum()) / (2 * h)
                          for e in torch.eye(3, dtype=DT)])
    torch.testing.assert_close(grad[0], fd, rtol=1e-5, atol=1e-8)


def test_stress_tangent_and_stiffness_refuse_non_finite_and_complex_and_take_arrays():
    """NaN strains or temperatures are refused in one line naming the entry (they had given NaN
    stresses and stiffnesses silently); numpy and integer strains are points like any other."""
    import numpy as np

    from oracles.exceptions import InvalidInput
    from surrogates.neural import SmallStrainEnsemble

    g = torch.Generator().manual_seed(2)
    eps = 0.01 * torch.randn(30, 3, generator=g, dtype=DT)
    sig = eps @ torch.tensor([[3.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 2.0]], dtype=DT)
    m = SmallStrainEnsemble.from_dataset(Dataset(X=eps, Y=sig), dim=2, num_members=2, hidden=(4,),
                                         training=dict(max_iter=2, inner_iter=5))
    bad = torch.zeros(2, 2, 2, dtype=DT)
    bad[1, 0, 1] = float("nan")
    with pytest.raises(InvalidInput, match=r"eps must be finite.*\(1, 0, 1\)"):
        m.stress_tangent(bad)
    with pytest.raises(TypeError, match="real"):
        m.stress_tangent(torch.zeros(1, 2, 2, dtype=torch.complex128))
    s_np, C_np = m.stress_tangent(np.zeros((1, 2, 2)))
    s_int, _ = m.stress_tangent(torch.zeros(1, 2, 2, dtype=torch.int64))
    s_ref, C_ref = m.stress_tangent(torch.zeros(1, 2, 2, dtype=DT))
    torch.testing.assert_close(s_np, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(s_int, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(C_np, C_ref, rtol=0, atol=0)

    T = torch.linspace(0, 1500, 12, dtype=DT).reshape(-1, 1)
    ce = CubicElasticEnsemble.from_dataset(Dataset(X=T, Y=cubic_constants_vs_T(T)), num_members=2, hidden=(4,),
                                           training=dict(max_iter=2, inner_iter=5))
    with pytest.raises(InvalidInput, match="X must be finite"):
        ce.stiffness(torch.tensor([[float("nan")]], dtype=DT))
