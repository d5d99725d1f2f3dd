"""Counter-based random numbers for the Numba Shapley kernels (g2l/ops/shapley.py): SplitMix64
streams keyed by ``(seed, game, j, i)``, so that the same seed gives the same draws whatever the
thread count (tests/reference/shapley_interaction.py has a plain-Python twin)."""

from __future__ import annotations

import numpy as np
from numba import njit

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_TO_UNIT = 2.0**-53
_GOLDEN_U64, _MIX1_U64, _MIX2_U64 = np.uint64(_GOLDEN), np.uint64(_MIX1), np.uint64(_MIX2)
_SHIFTS_U64 = (np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11))


@njit(cache=True)
def mix64(z):
    z = (z ^ (z >> _SHIFTS_U64[0])) * _MIX1_U64
    z = (z ^ (z >> _SHIFTS_U64[1])) * _MIX2_U64
    return z ^ (z >> _SHIFTS_U64[2])


@njit(cache=True)
def stream_start(seed, game, j, i):
    """Initial state of the stream of pair (j, i) of game ``game``."""
    state = mix64(seed + _GOLDEN_U64)
    state = mix64(state ^ mix64(np.uint64(game) + _GOLDEN_U64))
    state = mix64(state ^ mix64(np.uint64(j) + _MIX1_U64))
    return mix64(state ^ mix64(np.uint64(i) + _MIX2_U64))


@njit(cache=True)
def next_below(state, bound):
    """Advance the SplitMix64 state; return ``(new_state, integer uniform on 0 .. bound-1)``."""
    state = state + _GOLDEN_U64
    unit = np.float64(mix64(state) >> _SHIFTS_U64[3]) * _TO_UNIT  # in [0, 1), 53 bits
    return state, np.int64(unit * bound)


@njit(cache=True)
def next_unit(state):
    """Advance the SplitMix64 state; return ``(new_state, float uniform on [0, 1))``."""
    state = state + _GOLDEN_U64
    return state, np.float64(mix64(state) >> _SHIFTS_U64[3]) * _TO_UNIT
