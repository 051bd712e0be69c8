r"""Real FFTs of batches of fields on a periodic grid, and Fourier multipliers.

:class:`RealFFT` transforms real fields ``*batch x c x *grid`` to their
half spectrum ``*batch x c x *half`` (``*half`` is ``*grid`` with its last
axis ``n -> n // 2 + 1``) and back, with one of three back ends:

* ``"scipy"``: scipy's pocketfft (``scipy.fft.rfftn`` / ``irfftn``);
* ``"fftw"``: FFTW through pyFFTW's public :class:`pyfftw.FFTW` plans,
  ``FFTW_ESTIMATE`` (no planning time) or, as ``"fftw-measure"``,
  ``FFTW_MEASURE`` (slow to plan, for long runs on one grid);
* ``torch.fft`` for fields on a GPU or fields that need gradients.

``"auto"`` takes FFTW when pyFFTW is installed and the dtype is float64,
else scipy. pyFFTW is imported when a transform first selects it, not with
this module: ``import pyfftw`` also imports its numpy, scipy and dask
interfaces.

The forward transform carries the ``1 / N`` normalization (``N`` voxels), so
that ``inverse(forward(x)) == x`` on every back end.

:class:`FourierOperator` is the base of operators that act diagonally in
Fourier space (the compatibility projection of :mod:`oracles.rve.projection`,
the transport oracles' gradient and Stokes operators): a subclass defines
:meth:`FourierOperator.fourier` on complex coefficients and gets
``op(x)`` and :meth:`FourierOperator.apply` (several multipliers sharing one
forward transform) on real fields.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import threading

import scipy.fft
import torch
from torch import Tensor

from oracles.exceptions import InvalidInput

__all__ = ["FFT_BACKENDS", "FourierOperator", "RealFFT", "fftw_available", "resolve_backend"]

#: accepted values of the ``fft`` option
FFT_BACKENDS = ("auto", "scipy", "fftw", "fftw-measure")


def fftw_available() -> bool:
    """Whether pyFFTW is installed (checked without importing it)."""
    return importlib.util.find_spec("pyfftw") is not None


@functools.cache
def _pyfftw():
    import pyfftw

    return pyfftw


def resolve_backend(fft: str, dtype: torch.dtype) -> tuple[str, str]:
    """``(backend, FFTW planner flag)`` of the CPU transforms for the ``fft`` option.

    Raises:
        InvalidInput: ``fft`` is not one of :data:`FFT_BACKENDS`.
    """
    if fft not in FFT_BACKENDS:
        raise InvalidInput(f"fft must be one of {FFT_BACKENDS}, got {fft!r}")
    if fft == "scipy" or dtype != torch.float64 or not fftw_available():
        return "scipy", ""
    try:
        _pyfftw()
    except ImportError as e:  # installed but broken
        if fft == "auto":
            return "scipy", ""
        raise InvalidInput(f"fft={fft!r} needs pyFFTW, which does not import: {e}") from e
    return "fftw", "FFTW_MEASURE" if fft == "fftw-measure" else "FFTW_ESTIMATE"


class RealFFT:
    """Normalized real FFTs over the last ``k`` axes of fields on one grid.

    Args:
        shape: the grid ``n_1 x ... x n_k``.
        fft: ``"auto"``, ``"scipy"``, ``"fftw"`` or ``"fftw-measure"`` (CPU
            back end; see the module docstring).
        dtype: real dtype of the fields (FFTW is used for float64 only).

    Attributes:
        shape, half: the grid and its half spectrum.
        backend: ``"fftw"`` or ``"scipy"`` (the CPU back end).
        fftw_flag: FFTW's planner flag, ``""`` for scipy.
    """

    def __init__(self, shape: tuple[int, ...], fft: str = "auto", dtype: torch.dtype = torch.float64):
        self.shape = tuple(int(n) for n in shape)
        self.k = len(self.shape)
        self.dims = tuple(range(-self.k, 0))
        self.half = (*self.shape[:-1], self.shape[-1] // 2 + 1)
        self.n_voxels = math.prod(self.shape)
        self.backend, self.fftw_flag = resolve_backend(fft, dtype)
        self._local = threading.local()

    def _numpy_path(self, x: Tensor) -> bool:
        return x.device.type == "cpu" and not x.requires_grad

    def forward(self, x: Tensor) -> Tensor:
        """``*batch x *grid`` real -> ``*batch x *half`` complex, scaled by ``1 / N``."""
        if not self._numpy_path(x):
            return torch.fft.rfftn(x, dim=self.dims, norm="forward")
        if self.backend == "fftw":
            return self._fftw_forward(x.contiguous())
        # pocketfft rather than torch's FFT: faster on the odd sizes RVE grids
        # use; the arrays are shared with torch, not copied
        workers = torch.get_num_threads()
        return torch.from_numpy(
            scipy.fft.rfftn(x.contiguous().numpy(), axes=self.dims, norm="forward", workers=workers)
        )

    def inverse(self, xh: Tensor) -> Tensor:
        """``*batch x *half`` complex -> ``*batch x *grid`` real (unscaled).

        On the CPU the input is overwritten (FFTW's and pocketfft's complex-to-real
        transforms use it as scratch space)."""
        if not self._numpy_path(xh):
            return torch.fft.irfftn(xh, s=self.shape, dim=self.dims, norm="forward")
        if self.backend == "fftw":
            return self._fftw_inverse(xh)
        workers = torch.get_num_threads()
        y = scipy.fft.irfftn(
            xh.numpy(), s=self.shape, axes=self.dims, norm="forward", workers=workers, overwrite_x=True
        )
        return torch.from_numpy(y)

    # FFTW plans are made once per chunk shape (and thread count, and thread)
    # and reused by every CG iteration. A plan transforms a chunk of ``c``
    # fields and runs on each chunk of the batch in turn (new-array execution,
    # hence FFTW_UNALIGNED: chunks start at any offset). FFTW_ESTIMATE plans
    # of many fields at once run slower per field than plans of a few, while
    # each execution has a fixed cost, so a chunk holds up to 16k values
    # (several fields of a small grid, one field of a large one).
    def chunk(self, c: int) -> int:
        """Fields per FFTW execution for a batch whose second-to-grid axis is ``c``."""
        n = max(1, min(c, 16384 // self.n_voxels))
        while c % n:
            n -= 1
        return n

    def plans(self, c: int):
        """``(forward, backward, real buffer, complex buffer)``: pyFFTW plans of
        ``c`` fields (made on first use, cached per thread)."""
        cache = self._local.__dict__.setdefault("plans", {})
        threads = torch.get_num_threads()
        key = (c, threads)
        if key not in cache:
            pyfftw = _pyfftw()
            a = pyfftw.empty_aligned((c, *self.shape), dtype="float64")
            b = pyfftw.empty_aligned((c, *self.half), dtype="complex128")
            flags = (self.fftw_flag, "FFTW_UNALIGNED")
            fw = pyfftw.FFTW(a, b, axes=self.dims, flags=flags, threads=threads)
            bw = pyfftw.FFTW(
                b, a, axes=self.dims, direction="FFTW_BACKWARD", flags=(*flags, "FFTW_DESTROY_INPUT"), threads=threads
            )
            cache[key] = (fw, bw, a, b)
        return cache[key]

    def _chunks(self, x: Tensor) -> tuple[int, int]:
        c = self.chunk(x.shape[-self.k - 1] if x.dim() > self.k else 1)
        return c, x.numel() // (c * math.prod(x.shape[-self.k :]))

    def _fftw_forward(self, x: Tensor) -> Tensor:
        c, n_chunks = self._chunks(x)
        fw, _, a, b = self.plans(c)
        xh = torch.empty((*x.shape[: -self.k], *self.half), dtype=torch.complex128)
        xs = x.numpy().reshape(n_chunks, c, *self.shape)
        hs = xh.numpy().reshape(n_chunks, c, *self.half)
        for j in range(n_chunks):
            fw.update_arrays(xs[j], hs[j])
            fw.execute()
        # back to the plan's own buffers: it must not keep this call's fields alive
        fw.update_arrays(a, b)
        return xh.mul_(1.0 / self.n_voxels)  # FFTW's transforms are unnormalized

    def _fftw_inverse(self, xh: Tensor) -> Tensor:
        c, n_chunks = self._chunks(xh)
        _, bw, a, b = self.plans(c)
        res = torch.empty((*xh.shape[: -self.k], *self.shape), dtype=torch.float64)
        ys = xh.numpy().reshape(n_chunks, c, *self.half)
        rs = res.numpy().reshape(n_chunks, c, *self.shape)
        for j in range(n_chunks):
            bw.update_arrays(ys[j], rs[j])
            bw.execute()
        bw.update_arrays(b, a)
        return res

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_local"] = None  # FFTW plans are not picklable; remade on demand
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()


class FourierOperator:
    """Base of linear operators diagonal in Fourier space on periodic fields.

    A subclass implements :meth:`fourier`, the multiplier on complex
    coefficients ``... x c x *half``; ``op(x, coef)`` then applies it to real
    fields ``... x c x *grid`` and :meth:`apply` applies several multipliers
    to one field, sharing its forward FFT.

    Args:
        shape: the grid ``n_1 x ... x n_k``.
        fft: the FFT back end (see :class:`RealFFT`).
        dtype: real dtype of the fields.
    """

    def __init__(self, shape: tuple[int, ...], fft: str = "auto", dtype: torch.dtype = torch.float64):
        self.fft = RealFFT(shape, fft, dtype)
        self.shape, self.k, self.dims = self.fft.shape, self.fft.k, self.fft.dims
        self.half, self.n_voxels = self.fft.half, self.fft.n_voxels

    @property
    def backend(self) -> str:
        """The CPU FFT back end, ``"fftw"`` or ``"scipy"``."""
        return self.fft.backend

    @property
    def fftw_flag(self) -> str:
        """FFTW's planner flag (``""`` with scipy)."""
        return self.fft.fftw_flag

    def fourier(self, xh: Tensor, coef=None, out: Tensor | None = None) -> Tensor:
        """The multiplier selected by ``coef`` applied to ``xh`` (into ``out`` if given)."""
        raise NotImplementedError

    def __call__(self, x: Tensor, coef=None) -> Tensor:
        """The multiplier ``coef`` applied to real fields ``... x c x *grid``."""
        return self.apply(x, (coef,))[0]

    def apply(self, x: Tensor, coefs: tuple) -> tuple[Tensor, ...]:
        """Several multipliers applied to one real field, sharing its forward FFT."""
        xh = self.fft.forward(x)
        outs = []
        for i, c in enumerate(coefs):
            # the last multiplier may write over xh (not when autograd records it)
            last = i == len(coefs) - 1 and not xh.requires_grad
            outs.append(self.fft.inverse(self.fourier(xh, c, out=xh if last else None)))
        return tuple(outs)
