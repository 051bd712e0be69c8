"""Fitting one network: full-batch L-BFGS or Adam with early stopping.

The loss is a callable ``loss(module, idx) -> scalar`` over a subset ``idx`` of
the training rows, so the same loop serves stress-only and Sobolev
(stress + tangent) training and every network in this package. Early stopping
watches the loss on a validation split and restores the best weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class TrainingOptions:
    """Options of :func:`train_network`.

    Attributes:
        optimizer: ``"lbfgs"`` (full batch, strong-Wolfe line search) or ``"adam"``.
        max_iter: maximum number of optimizer steps (L-BFGS: outer steps of
            ``inner_iter`` iterations each).
        inner_iter: L-BFGS iterations per step (between validation checks).
        lr: learning rate (Adam; L-BFGS uses 1 with line search).
        patience: validation checks without improvement before stopping.
        tol: relative improvement of the validation loss that counts.
    """

    optimizer: str = "lbfgs"
    max_iter: int = 60
    inner_iter: int = 20
    lr: float = 1e-2
    patience: int = 5
    tol: float = 1e-4

    def __post_init__(self):
        if self.optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {self.optimizer!r}")
        for name in ("max_iter", "inner_iter", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name, ok in (("lr", lambda v: v > 0), ("tol", lambda v: 0 <= v < 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                want = "a finite number > 0" if name == "lr" else "a number in [0, 1)"
                raise ValueError(f"{name} must be {want}, got {v!r}")


def fraction(name: str, v) -> float:
    """``v`` as a float if it is a number in ``[0, 1)``, else a ``ValueError`` naming it."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {v!r}")
    return float(v)


def nonnegative(name: str, v) -> float:
    """``v`` as a float if it is a finite number ``>= 0``, else a ``ValueError`` naming it
    (a negative loss weight would reward the error it weighs)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(v)


def member_split(fit_idx: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor | None]:
    """Training and early-stopping rows of one ensemble member: a random ``val_fraction`` of
    ``fit_idx`` held out (seeded by ``seed``), or every row and no validation for 0."""
    if val_fraction <= 0:
        return fit_idx, None
    if len(fit_idx) < 2:
        raise ValueError(f"val_fraction = {val_fraction} needs at least 2 fitting rows (one to train, one to "
                         f"validate), got {len(fit_idx)}; pass val_fraction=0 to train on every row")
    tr, va = split_indices(len(fit_idx), (val_fraction,), seed=seed)
    return fit_idx[tr], fit_idx[va]


def training_options(training) -> TrainingOptions | None:
    """``training`` as :class:`TrainingOptions` (given as one, as a dict of its fields, or None)."""
    if training is None or isinstance(training, TrainingOptions):
        return training
    if isinstance(training, dict):
        return TrainingOptions(**training)
    raise ValueError(f"training must be TrainingOptions or a dict of its fields, got {training!r}")


@dataclass
class TrainingHistory:
    """Train and validation losses at each check and the step of the best weights."""

    train: list[float]
    val: list[float]
    best_step: int


def split_indices(n: int, fractions: tuple[float, ...], seed: int = 0) -> list[Tensor]:
    """Random disjoint index sets of sizes ``fractions`` of ``n`` (the rest goes first).

    ``split_indices(100, (0.2, 0.2))`` returns ``[train(60), a(20), b(20)]``.
    Every set has at least one row.
    """
    if any(f <= 0 for f in fractions) or sum(fractions) >= 1:
        raise ValueError(f"split fractions must be positive and sum below 1, got {fractions}")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    sizes = [max(1, int(round(f * n))) for f in fractions]
    if n - sum(sizes) < 1:
        raise ValueError(f"{n} rows are too few to split by {fractions}")
    out, start = [], n - sum(sizes)
    out.append(perm[:start])
    for s in sizes:
        out.append(perm[start : start + s])
        start += s
    return out


def rms(T: Tensor) -> Tensor:
    """The root-mean-square of ``T`` (0-d), computed relative to its largest magnitude so that
    values of 1e-170 do not square to an underflowed 0."""
    m = T.detach().abs().max() if T.numel() else T.new_zeros(())
    return m * (T / m).pow(2).mean().sqrt() if m > 0 else m


def data_scale(T: Tensor) -> Tensor:
    """The :func:`rms` of ``T``, 1 where ``T`` is zero throughout: the scale by which a
    training loss is made dimensionless (a zero stress, a void phase, had given a scale of 0
    and an infinite loss)."""
    s = rms(T)
    return s if s > 0 else torch.ones_like(s)


def scaled_mse(pred: Tensor, target: Tensor, scale: Tensor) -> Tensor:
    """``mean(((pred - target) / scale)^2)``: divided before squaring, so data on a scale of
    1e-170 do not underflow to a zero denominator."""
    return ((pred - target) / scale).pow(2).mean()


def train_network(
    module: nn.Module,
    loss: Callable[[nn.Module, Tensor], Tensor],
    train_idx: Tensor,
    val_idx: Tensor | None,
    options: TrainingOptions | None = None,
) -> TrainingHistory:
    """Minimize ``loss(module, train_idx)``; stop early on ``loss(module, val_idx)``.

    The module is left with the weights of the lowest validation loss (without
    a validation split: of the lowest training loss, the last weights while it
    falls). Training stops after ``patience`` steps without a relative gain of
    ``tol`` over the best loss, or at a non-finite loss.
    """
    opt_cfg = options or TrainingOptions()
    params = [p for p in module.parameters() if p.requires_grad]
    if opt_cfg.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            params, lr=1.0, max_iter=opt_cfg.inner_iter, history_size=20,
            line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-14,
        )
    else:
        opt = torch.optim.Adam(params, lr=opt_cfg.lr)

    def closure():
        opt.zero_grad()
        val = loss(module, train_idx)
        val.backward()
        return val

    best = math.inf
    best_state = copy.deepcopy(module.state_dict())
    best_step, bad = 0, 0
    hist_t, hist_v = [], []
    steps = opt_cfg.max_iter
    for step in range(steps):
        if opt_cfg.optimizer == "lbfgs":
            tr = opt.step(closure)
        else:
            for _ in range(opt_cfg.inner_iter):
                tr = opt.step(closure)
        tr = float(tr.detach())
        with torch.no_grad():
            # the loss of the weights now held (the optimizer's value is the one before its last step)
            v = float(loss(module, val_idx if val_idx is not None and len(val_idx) else train_idx))
        hist_t.append(tr)
        hist_v.append(v)
        if not math.isfinite(v):
            break
        # progress: a relative gain of tol; the weights kept: the lowest loss, however small the gain
        bad = 0 if not math.isfinite(best) or v < best * (1 - opt_cfg.tol) else bad + 1
        if v < best:
            best, best_step = v, step
            best_state = copy.deepcopy(module.state_dict())
        if bad >= opt_cfg.patience:
            break
    if not math.isfinite(best):
        raise ValueError(
            f"training of {type(module).__name__} never reached a finite loss (first values: train "
            f"{hist_t[:1]}, validation {hist_v[:1]}); check the training data for non-finite or extreme values")
    module.load_state_dict(best_state)
    return TrainingHistory(hist_t, hist_v, best_step)
