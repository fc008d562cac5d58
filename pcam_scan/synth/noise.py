"""Seamless noise addressed by level-0 position, so any region renders the same pixels whatever
block it is cut from (no seams between tiles or strips, same bytes for the same seed).

- `lattice_uniform`: a value per integer lattice point from a counter-based hash (splitmix64);
- `value_noise`: smooth noise interpolated between lattice points `spacing_px` apart;
- `NoiseTable`: cheap per-pixel grain, a seeded table repeated with a prime period.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LANE = np.uint64(0xD1B54A32D192ED03)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    mixed: np.ndarray = z ^ (z >> np.uint64(31))
    return mixed


def lattice_uniform(seed: int, stream: int, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float64 per lattice point (ix, iy) (broadcast), fixed by (seed, stream)."""
    ix64 = np.atleast_1d(np.asarray(ix, dtype=np.int64)).astype(np.uint64)
    iy64 = np.atleast_1d(np.asarray(iy, dtype=np.int64)).astype(np.uint64)
    key = np.atleast_1d(np.uint64(seed)) * _LANE + np.uint64(stream)
    z = _splitmix64(_splitmix64(_splitmix64(key) ^ ix64) ^ (iy64 * _LANE))
    uniform: np.ndarray = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return uniform


def _smoothstep(t: np.ndarray) -> np.ndarray:
    smoothed: np.ndarray = t * t * (3.0 - 2.0 * t)
    return smoothed


def value_noise(seed: int, stream: int, l0_x: int, l0_y: int, width: int, height: int, spacing_px: float) -> np.ndarray:
    """Smooth noise in [-1, 1], float32 (height, width), of feature size about `spacing_px`."""
    x = (l0_x + np.arange(width) + 0.5) / spacing_px
    y = (l0_y + np.arange(height) + 0.5) / spacing_px
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    gx = np.arange(x0[0], x0[-1] + 2)
    gy = np.arange(y0[0], y0[-1] + 2)
    lattice = 2.0 * lattice_uniform(seed, stream, gx[None, :], gy[:, None]) - 1.0
    wx = _smoothstep(x - x0).astype(np.float32)
    wy = _smoothstep(y - y0).astype(np.float32)
    cols = x0 - gx[0]
    # Interpolate along x for each lattice row, then along y: O(lattice rows * width + pixels).
    rows_x = (lattice[:, cols] * (1 - wx) + lattice[:, cols + 1] * wx).astype(np.float32)
    rows = y0 - gy[0]
    field: np.ndarray = rows_x[rows] * (1 - wy)[:, None] + rows_x[rows + 1] * wy[:, None]
    return field


class NoiseTable:
    """Per-pixel grain: a seeded standard-normal table tiled with a prime period.

    A prime period keeps the repeat out of step with tiles and with the nuclei; grain at one pixel
    scale carries no structure a reader could see repeat.
    """

    PERIOD = 509

    def __init__(self, seed: int, stream: int) -> None:
        rng = np.random.default_rng([int(seed), int(stream), 0x6E6F])
        self._table = rng.standard_normal((self.PERIOD, self.PERIOD)).astype(np.float32)

    def sample(self, l0_x: int, l0_y: int, width: int, height: int) -> np.ndarray:
        rows = (l0_y + np.arange(height)) % self.PERIOD
        cols = (l0_x + np.arange(width)) % self.PERIOD
        return self._table[rows[:, None], cols[None, :]]
