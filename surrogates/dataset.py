"""Training data for surrogates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

DTYPE = torch.float64


def real_tensor(name: str, value: Any, error: type[Exception] = ValueError) -> Tensor:
    """``value`` as a float64 tensor; complex or non-numeric data is an ``error`` naming
    ``name`` (a cast to float64 would drop the imaginary part with only a warning)."""
    dtype = getattr(value, "dtype", None)
    if (torch.is_tensor(value) and value.is_complex()) or (isinstance(value, np.ndarray) and np.iscomplexobj(value)):
        raise error(f"{name} must hold real numbers, got dtype {dtype}")
    try:
        return torch.as_tensor(value, dtype=DTYPE)
    except (TypeError, ValueError, RuntimeError) as err:
        raise error(f"{name} must be an array of real numbers, got {type(value).__name__} "
                    f"({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})") from None


def _as_tensor(name: str, value: Any, what: str) -> Tensor:
    """``value`` as a tensor of its own dtype; data torch cannot read is a ``ValueError``
    naming the field and what it must hold."""
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        why = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ValueError(f"Dataset.{name} must hold {what}, got {type(value).__name__} ({why})") from None


@dataclass
class Dataset:
    """Inputs and outputs for fitting a surrogate.

    Attributes:
        X: ``n x d`` inputs (float64). With fidelities, the fidelity level is
            *not* part of ``X``; it is in ``fidelity``.
        Y: ``n x m`` outputs.
        Yvar: ``n x m`` known observation variances, or None.
        fidelity: ``n`` integer fidelity levels (0 = cheapest), or None.
        input_names, output_names: optional names.
        observed: ``n x m`` boolean mask of the outputs actually measured at
            each point, or None (all observed). Entries of ``Y`` (and ``Yvar``)
            where the mask is False are ignored by surrogates that support
            missing outputs (e.g. the ICM GP) and must still be finite (use 0).
    """

    X: Tensor
    Y: Tensor
    Yvar: Tensor | None = None
    fidelity: Tensor | None = None
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    observed: Tensor | None = None

    def __post_init__(self):
        self.X = real_tensor("Dataset.X", self.X)
        self.Y = real_tensor("Dataset.Y", self.Y)
        if self.Y.dim() == 1:
            self.Y = self.Y.unsqueeze(-1)
        if self.X.dim() != 2:
            raise ValueError(f"Dataset.X must be n x d, got shape {tuple(self.X.shape)}")
        if self.Y.dim() != 2 or self.Y.shape[0] != self.X.shape[0]:
            raise ValueError(
                f"Dataset.Y must be n x m with n = {self.X.shape[0]}, got shape {tuple(self.Y.shape)}"
            )
        for what, names, k in (("input_names", self.input_names, self.X.shape[1]),
                               ("output_names", self.output_names, self.Y.shape[1])):
            if isinstance(names, str):
                raise ValueError(f"Dataset.{what} must be a sequence of {k} names, got the string {names!r}")
            if names is not None and len(names) != k:
                raise ValueError(f"Dataset.{what} has {len(names)} names {tuple(names)} for {k} columns")
            if names is not None and len(set(names)) != len(names):
                dup = sorted({str(n) for n in names if list(names).count(n) > 1})
                raise ValueError(f"Dataset.{what} must be distinct, got {tuple(names)} (repeated: {dup})")
        if self.Yvar is not None:
            self.Yvar = real_tensor("Dataset.Yvar", self.Yvar)
            if self.Yvar.dim() == 1:
                self.Yvar = self.Yvar.unsqueeze(-1)
            if self.Yvar.shape != self.Y.shape:
                raise ValueError(
                    f"Dataset.Yvar must match Y's shape {tuple(self.Y.shape)}, got {tuple(self.Yvar.shape)}"
                )
            if not torch.isfinite(self.Yvar).all():
                i, j = (~torch.isfinite(self.Yvar)).nonzero()[0].tolist()
                raise ValueError(
                    f"Dataset.Yvar must be finite (variances in output units), got {self.Yvar[i, j].item()!r} "
                    f"at row {i}, output {j}"
                )
            if (self.Yvar < 0).any():
                i, j = (self.Yvar < 0).nonzero()[0].tolist()
                raise ValueError(
                    f"Dataset.Yvar must be non-negative (variances in output units), got {self.Yvar[i, j].item()!r} "
                    f"at row {i}, output {j}"
                )
        if self.fidelity is not None:
            fid = _as_tensor("fidelity", self.fidelity, "integer levels (0 = cheapest)").reshape(-1)
            if fid.is_complex():
                raise ValueError(f"Dataset.fidelity must hold integer levels (0 = cheapest), got dtype {fid.dtype}")
            if fid.is_floating_point():
                # beyond 2**31 a float is no level anyone means, and .long() would wrap it
                bad = ~torch.isfinite(fid) | (fid != fid.round()) | (fid.abs() >= 2**31)
                if bad.any():
                    raise ValueError(
                        f"Dataset.fidelity must hold integer levels (0 = cheapest), got {fid[bad][0].item()!r}"
                    )
            self.fidelity = fid.long()
            if (self.fidelity < 0).any():
                raise ValueError(f"Dataset.fidelity must hold levels >= 0 (0 = cheapest), got "
                                 f"{int(self.fidelity[self.fidelity < 0][0])}")
            if self.fidelity.shape[0] != self.X.shape[0]:
                raise ValueError(
                    f"Dataset.fidelity must have {self.X.shape[0]} entries, got {self.fidelity.shape[0]}"
                )
        if self.observed is not None:
            obs = _as_tensor("observed", self.observed, "a boolean mask (True where an output was measured)")
            if obs.is_complex() or (obs.dtype != torch.bool and not ((obs == 0) | (obs == 1)).all()):
                bad = obs.flatten()[0] if obs.is_complex() else obs[(obs != 0) & (obs != 1)][0]
                raise ValueError(f"Dataset.observed must be a boolean mask (True or 1 where an output was "
                                 f"measured), got {bad.item()!r}")
            self.observed = obs.bool()
            if self.observed.dim() == 1:
                self.observed = self.observed.unsqueeze(-1)
            if self.observed.shape != self.Y.shape:
                raise ValueError(
                    f"Dataset.observed must match Y's shape {tuple(self.Y.shape)}, got {tuple(self.observed.shape)}"
                )
            if self.observed.all():
                self.observed = None
        bad = ~torch.isfinite(self.X).all(-1) | ~torch.isfinite(self.Y).all(-1)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(
                f"Dataset.X and Dataset.Y must be finite (drop failed points first); {int(bad.sum())} row(s) are not, "
                f"the first is row {i}: X = {self.X[i].tolist()}, Y = {self.Y[i].tolist()}"
            )

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def m(self) -> int:
        return self.Y.shape[1]

    def subset(self, idx: Tensor) -> Dataset:
        return Dataset(
            X=self.X[idx],
            Y=self.Y[idx],
            Yvar=None if self.Yvar is None else self.Yvar[idx],
            fidelity=None if self.fidelity is None else self.fidelity[idx],
            input_names=self.input_names,
            output_names=self.output_names,
            observed=None if self.observed is None else self.observed[idx],
        )

    def at_fidelity(self, level: int) -> Dataset:
        """The points at one fidelity level (all points when there is none)."""
        if self.fidelity is None:
            return self
        return self.subset(self.fidelity == level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (lists of floats)."""
        return {
            "X": self.X.tolist(),
            "Y": self.Y.tolist(),
            "Yvar": None if self.Yvar is None else self.Yvar.tolist(),
            "fidelity": None if self.fidelity is None else self.fidelity.tolist(),
            "input_names": list(self.input_names) if self.input_names else None,
            "output_names": list(self.output_names) if self.output_names else None,
            "observed": None if self.observed is None else self.observed.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dataset:
        return cls(
            X=torch.tensor(d["X"], dtype=DTYPE),
            Y=torch.tensor(d["Y"], dtype=DTYPE),
            Yvar=None if d.get("Yvar") is None else torch.tensor(d["Yvar"], dtype=DTYPE),
            fidelity=None if d.get("fidelity") is None else torch.tensor(d["fidelity"]),
            input_names=tuple(d["input_names"]) if d.get("input_names") else None,
            output_names=tuple(d["output_names"]) if d.get("output_names") else None,
            observed=None if d.get("observed") is None else torch.tensor(d["observed"], dtype=torch.bool),
        )

    @classmethod
    def from_oracle_results(cls, results, oracle=None) -> Dataset:
        """Concatenate successful points of :class:`oracles.OracleResult` s (at least one)."""
        results = list(results)
        if not results:
            raise ValueError("Dataset.from_oracle_results needs at least one OracleResult, got none")
        Xs, Ys, Vs, Fs = [], [], [], []
        any_var = any(r.Yvar is not None for r in results)
        for r in results:
            ok = ~r.failed
            Xs.append(r.X[ok])
            Ys.append(r.Y[ok])
            Fs.append(torch.full((int(ok.sum()),), r.fidelity, dtype=torch.long))
            if any_var:
                Vs.append(r.Yvar[ok] if r.Yvar is not None else torch.zeros_like(r.Y[ok]))
        return cls(
            X=torch.cat(Xs),
            Y=torch.cat(Ys),
            Yvar=torch.cat(Vs) if any_var else None,
            fidelity=torch.cat(Fs),
            input_names=tuple(oracle.input_names) if oracle is not None else None,
            output_names=tuple(oracle.output_names) if oracle is not None else None,
        )


#: an output whose spread is at most this fraction of its magnitude is constant to round-off
#: (float64 resolves 1e-16 of a magnitude; a supercell's total energy of 3.5e5 eV varying by
#: meV is a spread of 3e-9 of its magnitude, and real)
CONSTANT_RTOL = 1e-12


def output_scales(mean: Tensor, sd: Tensor, count: Tensor | int) -> Tensor:
    """Per-output scales for standardizing outputs, in their own units.

    ``mean``, ``sd``: each output's mean and standard deviation (``... x m``);
    ``count``: its number of values (an int, or ``m``). The scale is ``sd`` for
    an output that varies; ``|mean|`` for one that is constant to round-off
    (``sd <= CONSTANT_RTOL |mean|``) or has one value; and, for one that is
    zero throughout, the largest scale of the others (the outputs of a material
    model are components in one unit), or 1 when every output is zero. A scale
    read off the data keeps predictions and variances equivariant under
    ``y -> a y``: a fixed 1 (BoTorch's fallback) had made a zero output's
    variance depend on the units by ``a^2``.
    """
    count = torch.as_tensor(count, device=mean.device)
    const = (sd <= CONSTANT_RTOL * mean.abs()) | (sd <= 0) | (count <= 1)
    scale = torch.where(const, mean.abs(), sd)
    largest = scale.amax(dim=-1, keepdim=True)
    borrowed = torch.where(largest > 0, largest, torch.ones_like(largest)).expand_as(scale)
    return torch.where(scale > 0, scale, borrowed)


def data_scales(Y: Tensor) -> Tensor:
    """:func:`output_scales` of the columns of ``Y`` (``n x m``): ``m`` scales."""
    n = Y.shape[0]
    sd = Y.std(0) if n > 1 else torch.zeros_like(Y[0])
    return output_scales(Y.mean(0), sd, n)


def floor_yvar(Yvar: Tensor, Y: Tensor | None, rel: float, scale: Tensor | None = None) -> Tensor:
    """Known noise variances ``Yvar`` (``n x m``) floored at ``rel`` times each
    output's squared scale: ``scale`` (``m``) when given (a fitted model's
    standardization, kept when it is conditioned on more data), else
    :func:`data_scales` of ``Y``. Noise-free data (``Yvar = 0``) keep a
    Cholesky-stable nugget."""
    if scale is None:
        scale = data_scales(Y)
    return torch.maximum(Yvar, rel * scale.reshape(-1).pow(2))
