"""Convergence and parity plots of a campaign (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def convergence_plot(campaign, path: str | Path) -> Path:
    """Best value (optimize) or held-out errors (learn) against calls."""
    rows = campaign.store.metrics()
    by_name: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append((r["step"], r["value"]))
    keys = ["best_value"] if campaign.config.mode == "optimize" else ["nrmse", "nlpd", "coverage95"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.5), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        pts = by_name.get(k, [])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3)
        if k == "coverage95":
            ax.axhline(0.95, color="k", lw=0.8, ls="--")
        ax.set_xlabel("oracle calls")
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{campaign.config.name}: convergence")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def parity_plot(campaign, path: str | Path) -> Path:
    """Predicted vs observed: validation set (learn) or each point's prediction before it was run."""
    import torch

    from loops.models import predict

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    pred, obs, err = [], [], []
    if campaign.config.mode == "learn" and campaign.model is not None:
        Xv, Yv, _ = campaign.data(role="validation")
        if len(Xv):
            if campaign.problem.multi_fidelity:
                Xv[:, -1] = float(campaign.problem.target_fidelity)
            mu, var = predict(campaign.model, Xv)
            pred, obs, err = mu.flatten().tolist(), Yv.flatten().tolist(), (1.96 * var.sqrt()).flatten().tolist()
        title = "held-out validation"
    else:
        for r in campaign.store.rows(status="done"):
            if r.get("prediction") and r["y"] is not None:
                pred += r["prediction"]["mean"]
                obs += r["y"]
                err += [1.96 * s for s in r["prediction"]["std"]]
        title = "prediction before evaluation"
    if pred:
        ax.errorbar(obs, pred, yerr=err, fmt="o", ms=3, alpha=0.6, lw=0.8)
        lo, hi = min(obs + pred), max(obs + pred)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("oracle")
    ax.set_ylabel("surrogate (95% interval)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    del torch
    return Path(path)
