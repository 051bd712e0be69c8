"""Bad images given to the transport solvers: one InvalidInput naming what is wrong."""

import numpy as np
import pytest

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
