"""FFT back ends of the RVE solver against numpy's FFT, and the Fourier-operator base."""

import math
import pickle

import numpy as np
import pytest
import torch

from oracles.exceptions import InvalidInput
from oracles.rve.fft import FFT_BACKENDS, FourierOperator, RealFFT, fftw_available, resolve_backend

DT = torch.float64
CPU_BACKENDS = ["scipy", "fftw"] if fftw_available() else ["scipy"]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape, batch", [((9, 8), (2, 3)), ((131, 131), (1, 3)), ((5, 6, 7), (2, 6)), ((4, 4, 4), ())])
def test_forward_is_numpys_normalized_rfftn_and_inverse_undoes_it(backend, shape, batch):
    """Every back end, with its chunking of the batch, gives numpy's rfftn / N."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*batch, *shape, generator=g, dtype=DT)
    fft = RealFFT(shape, backend, DT)
    assert fft.backend == backend
    xh = fft.forward(x)
    axes = tuple(range(-len(shape), 0))
    ref = np.fft.rfftn(x.numpy(), axes=axes) / math.prod(shape)
    assert xh.shape == ref.shape
    np.testing.assert_allclose(xh.numpy(), ref, rtol=0, atol=1e-14)
    y = fft.inverse(xh.clone())
    torch.testing.assert_close(y, x, rtol=0, atol=1e-13)


def test_torch_path_for_fields_that_need_gradients():
    """Fields that require gradients go through torch.fft, differentiably:
    the gradient of sum(inverse(forward(x)) * w) is w."""
    shape = (6, 5)
    fft = RealFFT(shape, "auto", DT)
    x = torch.randn(3, *shape, dtype=DT, requires_grad=True)
    w = torch.randn(3, *shape, dtype=DT)
    xh = fft.forward(x)
    np.testing.assert_allclose(xh.detach().numpy(), np.fft.rfftn(x.detach().numpy(), axes=(-2, -1)) / 30, atol=1e-14)
    (fft.inverse(xh) * w).sum().backward()
    torch.testing.assert_close(x.grad, w)


def test_backend_resolution_and_errors():
    assert resolve_backend("scipy", DT) == ("scipy", "")
    assert resolve_backend("auto", torch.float32) == ("scipy", "")  # FFTW plans are float64
    if fftw_available():
        assert resolve_backend("auto", DT) == ("fftw", "FFTW_ESTIMATE")
        assert resolve_backend("fftw-measure", DT) == ("fftw", "FFTW_MEASURE")
    with pytest.raises(InvalidInput, match="fft must be one of"):
        resolve_backend("mkl", DT)
    assert set(FFT_BACKENDS) == {"auto", "scipy", "fftw", "fftw-measure"}


@pytest.mark.skipif(not fftw_available(), reason="pyFFTW is not installed")
def test_fftw_plans_are_reused_dropped_on_pickling_and_remade():
    fft = RealFFT((7, 9), "fftw", DT)
    x = torch.randn(2, 3, 7, 9, dtype=DT)
    a = fft.forward(x)
    plans = fft.plans(fft.chunk(3))
    fft.forward(x)
    assert fft.plans(fft.chunk(3)) is plans  # cached, not remade per call
    clone = pickle.loads(pickle.dumps(fft))
    torch.testing.assert_close(clone.forward(x), a, rtol=0, atol=0)


def test_chunk_divides_the_batch_axis_and_bounds_the_plan_size():
    fft = RealFFT((63, 63), "scipy", DT)
    for c in (1, 3, 6, 9):
        n = fft.chunk(c)
        assert c % n == 0 and (n == 1 or n * 63 * 63 <= 16384)
    assert RealFFT((729, 729), "scipy", DT).chunk(3) == 1


class Derivative(FourierOperator):
    """d/dx_axis on a periodic grid of unit length (``coef`` picks the axis)."""

    def fourier(self, xh, coef=None, out=None):
        axis = 0 if coef is None else coef
        n = self.shape[axis]
        f = torch.fft.rfftfreq(n, 1.0 / n) if axis == self.k - 1 else torch.fft.fftfreq(n, 1.0 / n)
        f = f.to(DT)
        if n % 2 == 0:
            f[f.abs() == n // 2] = 0.0  # the Nyquist mode has no derivative
        shape = [1] * self.k
        shape[axis] = -1
        mult = (2j * math.pi * f).reshape(shape)
        if out is None:
            return xh * mult
        return torch.mul(xh, mult, out=out)


@pytest.mark.parametrize("fft", CPU_BACKENDS)
def test_fourier_operator_subclass_differentiates_trigonometric_fields_exactly(fft):
    """A spectral derivative is exact on resolved Fourier modes; :meth:`apply`
    shares one forward FFT among several multipliers."""
    n1, n2 = 16, 15
    x1 = torch.arange(n1, dtype=DT)[:, None] / n1
    x2 = torch.arange(n2, dtype=DT)[None, :] / n2
    u = torch.sin(2 * math.pi * 3 * x1) * torch.cos(2 * math.pi * 2 * x2)
    du1 = 2 * math.pi * 3 * torch.cos(2 * math.pi * 3 * x1) * torch.cos(2 * math.pi * 2 * x2)
    du2 = -2 * math.pi * 2 * torch.sin(2 * math.pi * 3 * x1) * torch.sin(2 * math.pi * 2 * x2)
    D = Derivative((n1, n2), fft=fft)
    assert D.backend == fft
    torch.testing.assert_close(D(u), du1, rtol=0, atol=1e-11)
    a, b = D.apply(u.unsqueeze(0), (0, 1))
    torch.testing.assert_close(a[0], du1, rtol=0, atol=1e-11)
    torch.testing.assert_close(b[0], du2, rtol=0, atol=1e-11)


def test_a_broken_pyfftw_falls_back_to_scipy_under_auto(monkeypatch):
    import oracles.rve.fft as fft_mod

    def broken():
        raise ImportError("libfftw3.so.3: cannot open shared object file")

    monkeypatch.setattr(fft_mod, "fftw_available", lambda: True)
    monkeypatch.setattr(fft_mod, "_pyfftw", broken)
    assert fft_mod.resolve_backend("auto", DT) == ("scipy", "")
    with pytest.raises(InvalidInput, match="needs pyFFTW, which does not import"):
        fft_mod.resolve_backend("fftw", DT)
