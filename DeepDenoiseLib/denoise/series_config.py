"""The settings of MP-PCA, the 4D series method (local_pca.py): a section of the settings table of
:class:`~DeepDenoiseLib.denoise.config.DenoiseConfig`, kept in a module of its own (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from DeepDenoiseLib.core.settings import Flag, Section, setting

#: The sub-commands that can denoise a 4D series on its own (MP-PCA).
SERIES_COMMANDS = ("denoise",)


@dataclass
class SeriesConfig(Section):
    """MP-PCA (method ``mppca``): local PCA over every frame in patches of ``(2 * patch_radius + 1)^3``
    voxels, placed every ``patch_stride`` voxels along each axis (1: every position, as dipy's
    ``mppca``; 2: about eight times fewer patches, nearly the same result). ``wiener`` adds a second
    pass that shrinks each patch's components by an empirical Wiener filter in the first pass's
    eigenbasis (about twice the time)."""

    SECTION: ClassVar[str] = "series"

    patch_radius: int = setting(
        2, low=1, high=4, flags=[Flag("--patch-radius", "mppca: patch radius in voxels (default {default}: 5x5x5)", SERIES_COMMANDS)]
    )
    patch_stride: int = setting(
        2,
        low=1,
        high=lambda series: 2 * series.patch_radius + 1,
        flags=[Flag("--patch-stride", "mppca: voxels between patches (default {default}; 1: every position, as dipy)", SERIES_COMMANDS)],
    )
    wiener: bool = setting(False, flags=[Flag("--wiener", "mppca: add an empirical Wiener pass (about twice the time)", SERIES_COMMANDS)])
