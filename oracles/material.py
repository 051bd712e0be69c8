"""The material-point interface shared by laws, RVE oracles and surrogates.

FE² asks each macro Gauss point for stress and tangent at a batch of
deformation gradients. Anything that answers :meth:`MaterialModel.material_response`
can serve: an analytic law, the RVE oracle, a surrogate, or the adaptive switch.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from torch import Tensor


class MaterialResponse(NamedTuple):
    """Stress answer at a batch of material points.

    Attributes:
        P: ``n x k x k`` first Piola-Kirchhoff stress.
        tangent: ``n x k x k x k x k`` dP/dF (``tangent[a, i, J, k, L] = dP_iJ / dF_kL``).
        variance: ``n`` scalar uncertainty per point (for example the mean
            predictive variance of the stress components), or None for exact
            sources.
    """

    P: Tensor
    tangent: Tensor
    variance: Tensor | None = None


@runtime_checkable
class MaterialModel(Protocol):
    """Stress and tangent at a batch of deformation gradients.

    ``F`` is ``n x k x k`` float64 with ``k = 2`` (plane strain: the in-plane
    block, ``F33 = 1``) or ``k = 3``.
    """

    def material_response(self, F: Tensor) -> MaterialResponse: ...
