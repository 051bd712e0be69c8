"""Bad images given to the transport solvers: one InvalidInput naming what is wrong."""

import numpy as np
import pytest
import torch

from oracles.exceptions import InvalidInput
from oracles.transport import effective_conductivity, permeability, tortuosity


def test_ragged_images_are_named():
    # numpy's "setting an array element with a sequence" had reached the user
    with pytest.raises(InvalidInput, match="phase map must be a 2D or 3D array"):
        effective_conductivity([[0, 1], [1]], [1.0, 2.0])
    with pytest.raises(InvalidInput, match="solid mask must be a 2D or 3D array"):
        permeability([[0, 1], [1]])
    with pytest.raises(InvalidInput, match="tortuosity mask must be a 2D or 3D array"):
        tortuosity([[0, 1], [1]])


def test_infinite_phase_id_is_named():
    # inf had been cast to phase id -9223372036854775808 (with numpy's cast warning)
    with pytest.raises(InvalidInput, match="non-finite"):
        effective_conductivity(np.array([[0.0, np.inf], [1.0, 0.0]]), [1.0, 2.0])


@pytest.mark.parametrize("value", [True, [1.0, True], np.array([True, False]), torch.tensor(True), np.bool_(False)])
def test_a_boolean_conductivity_is_refused(value):
    """A boolean is not a conductivity: True had been read as the isotropic tensor 1 (and
    False as an insulating phase) without a word."""
    from oracles.exceptions import InvalidInput
    from oracles.transport.conductivity import phase_tensor

    with pytest.raises(InvalidInput, match="boolean"):
        phase_tensor(value, 2)


def test_numeric_conductivities_of_every_form_are_read():
    from oracles.transport.conductivity import phase_tensor

    expected = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))
    for v in ([1, 2], np.array([1.0, 2.0]), torch.tensor([1.0, 2.0]), [[1, 0], [0, 2]]):
        assert torch.equal(phase_tensor(v, 2), expected)
    assert torch.equal(phase_tensor(np.float32(2.5), 2), 2.5 * torch.eye(2, dtype=torch.float64))
