"""The in-memory volume: voxel array plus the geometry that places it in the world.

Arrays are indexed ``[k, j, i]`` (z, y, x; the order of SimpleITK's ``GetArrayFromImage`` and Slicer's
``arrayFromVolume``). ``spacing`` and ``origin`` are given in (i, j, k) = (x, y, z) order in millimetres,
``direction`` is the 3x3 matrix whose columns are the i, j, k axis directions, in LPS as ITK and
SimpleITK use it. The Slicer bridge converts to RAS. A 4D series keeps time first: ``[t, k, j, i]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A scalar image with its geometry; operations that keep the grid keep the geometry exactly."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def is_4d(self) -> bool:
        return self.array.ndim == 4

    def with_array(self, array: np.ndarray) -> Volume:
        """A new volume on the same grid (same spacing, origin, direction) holding ``array``."""
        if array.shape[-3:] != self.array.shape[-3:]:
            raise ValueError(f"array shape {array.shape} does not match the grid {self.array.shape}")
        return replace(self, array=array, direction=self.direction.copy(), metadata=dict(self.metadata))

    def same_geometry(self, other: Volume) -> bool:
        """True when both volumes lie on exactly the same grid."""
        return (
            self.array.shape[-3:] == other.array.shape[-3:]
            and self.spacing == other.spacing
            and self.origin == other.origin
            and np.array_equal(self.direction, other.direction)
        )
