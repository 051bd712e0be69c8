"""Periodic percolation of voxel sets."""

import numpy as np

from oracles.transport.topology import percolating_axes


def test_straight_and_closed():
    m = np.zeros((8, 9), dtype=bool)
    m[2, :] = True  # a line along axis 1
    assert percolating_axes(m) == (False, True)
    m = np.zeros((8, 9, 7), dtype=bool)
    m[2:5, 2:5, 2:5] = True
    assert percolating_axes(m) == (False, False, False)
    assert percolating_axes(np.ones((4, 4), dtype=bool)) == (True, True)
    assert percolating_axes(np.zeros((4, 4), dtype=bool)) == (False, False)


def test_path_through_the_periodic_boundary_only():
    # a segment through the periodic face does not wrap
    m = np.zeros((10, 10), dtype=bool)
    m[0:3, 4] = True
    m[7:10, 4] = True
    assert percolating_axes(m) == (False, False)
    # a jogged path that closes on itself only through the periodic face wraps
    m = np.zeros((10, 10), dtype=bool)
    m[0:5, 4] = True
    m[4, 4:7] = True
    m[5:10, 6] = True
    m[9, 4:7] = True  # back to column 4, which continues across the face at row 0
    assert percolating_axes(m) == (True, False)
    # two pieces touching across the boundary but closing on themselves do not wrap
    m = np.zeros((10, 10), dtype=bool)
    m[0, 3:6] = True
    m[9, 3:6] = True
    assert percolating_axes(m) == (False, False)


def test_staircase_diagonal_wraps_both_ways():
    n = 8
    m = np.zeros((n, n), dtype=bool)
    for i in range(n):
        m[i, i] = m[i, (i + 1) % n] = True  # face-connected staircase
    assert percolating_axes(m) == (True, True)
    # diagonal touching only at corners: not face connected
    d = np.eye(n, dtype=bool)
    assert percolating_axes(d) == (False, False)
