r"""``scalebridge cohesive``: cohesive-law parameters and K_Ic, printed as JSON.

Usage::

    scalebridge cohesive --law bilinear --gamma 1.3 --sigma-max 10 \
        --C11 168.4 --C12 121.4 --C44 75.4 [--plane strain] \
        [--gamma-t 1.0] [--tau-max 8] [--peak-ratio 0.1] [--curve 50]

Options:

* ``--law {bilinear,exponential,ppr}``: the traction–separation law.
* ``--gamma``: surface energy in J/m² (``Gamma = 2 gamma``).
* ``--sigma-max``: peak normal traction in GPa.
* ``--C11 --C12 --C44``: cubic elastic constants in GPa (Voigt–Reuss–Hill average).
* ``--plane {strain,stress}``: ``E' = E/(1-nu^2)`` or ``E``.
* ``--gamma-t``: mode-II surface energy in J/m² (exponential, PPR); default ``--gamma``.
* ``--tau-max``: peak shear traction in GPa; default ``--sigma-max``.
* ``--peak-ratio``, ``--r``, ``--alpha``, ``--beta``, ``--lambda-n``, ``--lambda-t``:
  law shape options (bilinear; exponential; PPR).
* ``--curve N``: also print ``N`` points of the mode-I traction–separation curve
  (to 3 final openings; the exponential law to 25 characteristic lengths, its area ``Gamma_n``).

Output keys: ``law``, ``inputs``, ``outputs`` (``Gamma`` J/m², ``delta_c`` and
``delta_peak`` nm, ``E`` GPa, ``nu``, ``E_prime`` GPa, ``K_Ic`` MPa·m^0.5),
``units``, ``law_parameters``, ``vrh`` and optionally ``curve``. Bad input
prints the reason on stderr and returns 2.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

from oracles.exceptions import InvalidInput

# torch is imported by compute(), not here: `scalebridge cohesive --help` and its usage errors
# answer without it


def curve_end(law) -> float:
    """Largest opening (nm) of the printed mode-I curve: 3 final openings for the laws with one
    (bilinear, PPR); for the exponential law, whose traction never ends, 25 characteristic
    lengths, beyond which a fraction ``26 e^-25 < 1e-9`` of ``Gamma_n`` remains."""
    from oracles.cohesive.laws import ExponentialLaw

    return (25.0 if isinstance(law, ExponentialLaw) else 3.0) * law.critical_opening


#: most points of a printed traction-separation curve
MAX_CURVE_POINTS = 100_000

_LAW_OPTIONS = {
    "bilinear": ("peak_ratio",),
    "exponential": ("r",),
    "ppr": ("alpha", "beta", "lambda_n", "lambda_t"),
}


#: magnitudes accepted for the physical inputs (J/m^2, GPa)
MIN_MAGNITUDE, MAX_MAGNITUDE = 1e-12, 1e12


def register(subparsers, name: str = "cohesive") -> None:
    p = subparsers.add_parser(
        name,
        help="cohesive-law parameters and K_Ic; prints JSON",
        description="Cohesive-law parameters (Gamma = 2 gamma) and K_Ic = sqrt(E' Gamma) "
        "with E, nu from the Voigt-Reuss-Hill average of cubic constants.",
        epilog="example:\n  scalebridge cohesive --law bilinear --gamma 1.3 --sigma-max 10 "
        "--C11 168.4 --C12 121.4 --C44 75.4\n\nexit status 0 on success, 2 on bad input",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    def error(message: str):  # argparse's errors as one line
        print(f"scalebridge cohesive: error: {message}", file=sys.stderr)
        sys.exit(2)

    p.error = error
    p.add_argument("--law", choices=("bilinear", "exponential", "ppr"), default="bilinear")
    p.add_argument("--gamma", type=float, required=True, help="surface energy [J/m^2]")
    p.add_argument("--sigma-max", type=float, required=True, help="peak normal traction [GPa]")
    p.add_argument("--C11", type=float, required=True, help="[GPa]")
    p.add_argument("--C12", type=float, required=True, help="[GPa]")
    p.add_argument("--C44", type=float, required=True, help="[GPa]")
    p.add_argument("--plane", choices=("strain", "stress"), default="strain")
    p.add_argument("--gamma-t", type=float, default=None, help="mode-II surface energy [J/m^2]")
    p.add_argument("--tau-max", type=float, default=None, help="peak shear traction [GPa]")
    p.add_argument("--peak-ratio", type=float, default=None, help="bilinear: peak/final opening")
    p.add_argument("--r", type=float, default=None, help="exponential: Xu-Needleman r")
    p.add_argument("--alpha", type=float, default=None, help="PPR: normal shape exponent")
    p.add_argument("--beta", type=float, default=None, help="PPR: shear shape exponent")
    p.add_argument("--lambda-n", type=float, default=None, help="PPR: normal slope indicator")
    p.add_argument("--lambda-t", type=float, default=None, help="PPR: shear slope indicator")
    p.add_argument("--curve", type=int, default=0, help="number of mode-I curve points to print")
    p.set_defaults(func=run)


def compute(args: argparse.Namespace) -> dict:
    """The JSON-ready answer for parsed arguments (raises InvalidInput on bad input)."""
    import torch

    from oracles.base import DTYPE
    from oracles.cohesive.oracle import CohesiveOracle

    options = {k: getattr(args, k) for k in _LAW_OPTIONS[args.law] if getattr(args, k) is not None}
    others = [k for law, ks in _LAW_OPTIONS.items() if law != args.law for k in ks if getattr(args, k) is not None]
    if others:
        takes = ", ".join("--" + k.replace("_", "-") for k in _LAW_OPTIONS[args.law])
        raise InvalidInput(f"options {', '.join('--' + k.replace('_', '-') for k in others)} do not apply to the "
                           f"{args.law} law; it takes {takes}")
    for nm in ("gamma", "sigma_max", "gamma_t", "tau_max", "C11", "C12", "C44", *_LAW_OPTIONS[args.law]):
        v = getattr(args, nm)
        if v is not None and not math.isfinite(v):
            raise InvalidInput(f"--{nm.replace('_', '-')} must be a finite number, got {v}")
    for nm in ("gamma", "sigma_max", "gamma_t", "tau_max"):
        v = getattr(args, nm)
        if v is not None and not v > 0:
            raise InvalidInput(f"--{nm.replace('_', '-')} must be positive, got {v}")
    # magnitudes whose unit conversions stay finite and nonzero in double precision
    for nm in ("gamma", "sigma_max", "gamma_t", "tau_max", "C11", "C12", "C44"):
        v = getattr(args, nm)
        if v is not None and not (v == 0 or MIN_MAGNITUDE <= abs(v) <= MAX_MAGNITUDE):
            raise InvalidInput(f"--{nm.replace('_', '-')} = {v:g} is out of range: use values of magnitude "
                               f"{MIN_MAGNITUDE:g} to {MAX_MAGNITUDE:g} in the stated units")
    if args.law == "bilinear" and args.gamma_t is not None and args.gamma_t != args.gamma:
        raise InvalidInput(f"--gamma-t does not apply to the bilinear law (one fracture energy, --gamma, for all "
                           f"modes); got --gamma-t {args.gamma_t:g} with --gamma {args.gamma:g}")
    if not 0 <= args.curve <= MAX_CURVE_POINTS:
        raise InvalidInput(f"--curve must be a number of points in [0, {MAX_CURVE_POINTS}], got {args.curve}")
    x = [args.gamma, args.sigma_max, args.C11, args.C12, args.C44]
    # the CLI accepts any positive values: the box is this point
    bounds = {n: (min(0.5 * v, v - 1.0), max(2.0 * v, v + 1.0)) for n, v in zip(CohesiveOracle.input_names, x, strict=True)}
    oracle = CohesiveOracle(
        law=args.law,
        plane=args.plane,
        shear_energy_ratio=1.0 if args.gamma_t is None else args.gamma_t / args.gamma,
        shear_strength_ratio=1.0 if args.tau_max is None else args.tau_max / args.sigma_max,
        law_options=options,
        bounds=bounds,
    )
    res = oracle.evaluate(torch.tensor([x], dtype=DTYPE))
    if res.failed[0]:
        raise InvalidInput(res.reasons[0].split(": ", 1)[-1])
    out = {
        "law": args.law,
        "plane": args.plane,
        "inputs": dict(zip(oracle.input_names, x, strict=True)),
        "outputs": dict(zip(oracle.output_names, res.Y[0].tolist(), strict=True)),
        "units": oracle.units,
        "law_parameters": res.metadata[0]["law_parameters"],
        "vrh": res.metadata[0]["vrh"],
    }
    if args.curve:
        law = oracle.make_law(torch.tensor(x, dtype=DTYPE))
        d = torch.linspace(0.0, curve_end(law), args.curve, dtype=DTYPE)
        T = law.traction(torch.stack([d, torch.zeros_like(d)], -1))[:, 0]
        out["curve"] = {"opening_nm": d.tolist(), "traction_GPa": T.tolist()}
    return out


def _option_names(message: str) -> str:
    """``message`` of a law with its shape parameters named by their options (``peak_ratio`` -> ``--peak-ratio``)."""
    for nm in (k for ks in _LAW_OPTIONS.values() for k in ks):
        message = re.sub(rf"(?<![-\w]){nm}\b(?=[ =])", "--" + nm.replace("_", "-"), message)
    return message


def run(args: argparse.Namespace) -> int:
    try:
        out = compute(args)
    except InvalidInput as e:
        print(f"scalebridge cohesive: error: {_option_names(str(e))}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0
