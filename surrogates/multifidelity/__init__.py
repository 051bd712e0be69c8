r"""Multi-fidelity Gaussian-process surrogates over ``L`` ordered fidelity levels.

* :class:`AR1CoKriging` -- Kennedy & O'Hagan (2000), one joint GP (exact for
  non-nested designs; the model of ``mf_campaigns.py``'s campaigns);
* :class:`RecursiveCoKriging` -- Le Gratiet & Garnier (2014), level by level
  (the default model of the surrogate benchmark ``multifidelity.py``);
* :class:`NARGP` -- Perdikaris et al. (2017), nonlinear in the level below.

All share one core (:mod:`surrogates.multifidelity.core`: GPyTorch
correlations, universal kriging with REML, one MAP fitter) and one base
(:mod:`surrogates.multifidelity.model`: scaling, explicit ``noise``,
BoTorch posterior, persistence, cost model).
"""

from surrogates.multifidelity.ar1 import AR1CoKriging
from surrogates.multifidelity.model import NOISE_MODES, MultiFidelityModel, TooFewLevelPoints
from surrogates.multifidelity.nargp import NARGP
from surrogates.multifidelity.recursive import RecursiveCoKriging

__all__ = ["AR1CoKriging", "MultiFidelityModel", "NARGP", "NOISE_MODES", "RecursiveCoKriging", "TooFewLevelPoints"]
