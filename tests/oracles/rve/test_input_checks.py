"""Bad inputs to the RVE solver and laws, as a user meets them: each is one
InvalidInput naming the value, never a bare numpy/torch error or a silent cast."""

import numpy as np
import pytest
import torch

from oracles.exceptions import InvalidInput
from oracles.rve import FFTSolver, IsotropicElastic, NeoHookean

PHASES = [IsotropicElastic(1.0, 0.3), IsotropicElastic(10.0, 0.3)]
PM = np.array([[0, 1], [1, 0]])


@pytest.mark.parametrize("phases", [PHASES, [NeoHookean(1.0, 0.3), NeoHookean(10.0, 0.3)]])
def test_no_load_is_named(phases):
    # an empty batch of loads had ended in torch's "amax(): Expected reduction dim" / "cannot reshape"
    s = FFTSolver(PM, phases)
    with pytest.raises(InvalidInput, match=r"L >= 1.*got \(0, 2, 2\)"):
        s.homogenize(torch.zeros(0, 2, 2, dtype=torch.float64))


def test_infinite_phase_id_is_named():
    # inf passed the integer test and was cast to id -9223372036854775808
    with pytest.raises(InvalidInput, match="non-finite"):
        FFTSolver(np.array([[0.0, np.inf], [1.0, 0.0]]), PHASES)


@pytest.mark.parametrize("value", [True, "1", b"1"])
def test_moduli_refuse_bools_and_strings(value):
    # True had been read as E = 1 and "1" as 1.0
    with pytest.raises(InvalidInput, match="E must be a number"):
        IsotropicElastic(value, 0.3)
    with pytest.raises(InvalidInput, match="nu must be a number"):
        IsotropicElastic(1.0, "0.3")


def test_solver_settings_take_numpy_scalars_and_refuse_bools():
    ref = FFTSolver(PM, PHASES).effective_tensor()[0]
    C = FFTSolver(PM, PHASES, cg_tol=np.float32(1e-8), cg_maxiter=np.int64(100)).effective_tensor()[0]
    torch.testing.assert_close(C, ref)
    # True had been taken as one CG iteration
    with pytest.raises(InvalidInput, match="cg_maxiter must be a positive integer, got True"):
        FFTSolver(PM, PHASES, cg_maxiter=True)
    with pytest.raises(InvalidInput, match="newton_maxiter"):
        FFTSolver(PM, PHASES, newton_maxiter=2.5)
