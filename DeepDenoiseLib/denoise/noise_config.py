"""The settings of the noise model (noise_models.py): a section of the settings table of
:class:`~DeepDenoiseLib.denoise.config.DenoiseConfig`, kept in a module of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from DeepDenoiseLib.core.settings import Flag, Panel, Section, setting
from DeepDenoiseLib.denoise.commands import TRAINING_COMMANDS

NOISE_MODELS = ("gaussian", "rician", "poisson", "speckle")
#: How the noise of neighbouring voxels is taken: estimated (``auto``) or independent (``white``).
CORRELATIONS = ("auto", "white")
#: The noise models whose spatial correlation is estimated under ``correlation: auto``.
CORRELATED_NOISE_MODELS = ("gaussian", "rician")
#: The panel's modality presets and the noise model each one sets. Reconstructed CT noise is close to
#: Gaussian; PET counts are Poisson-like; ultrasound has multiplicative speckle.
MODALITY_NOISE_MODELS = {"MRI": "rician", "CT": "gaussian", "PET": "poisson", "ultrasound": "speckle", "generic": "gaussian"}


@dataclass
class NoiseConfig(Section):
    """The noise in the volume (noise_models.py); parameters left ``None`` are estimated from the volume.

    - ``gaussian``: additive, ``sigma`` in intensity units (reconstructed CT, generic images).
    - ``rician``: magnitude MRI; denoised like Gaussian noise of ``sigma`` (close to it in tissue) and
      then corrected for the Rician bias, which lifts dark regions off the noise floor (rician.py).
    - ``poisson``: photon counting (PET, SPECT, low-dose imaging, microscopy), ``variance = gain *
      intensity + sigma**2`` (``gain``: intensity per photon; ``sigma``: Gaussian read noise);
      denoised after the generalised Anscombe transform, inverted without bias (vst.py).
    - ``speckle``: multiplicative ultrasound speckle, ``sigma`` its relative std (1/sqrt(looks));
      denoised in the log domain, inverted without bias.

    ``correlation`` (gaussian and rician): ``auto`` estimates how alike the noise of neighbouring
    voxels is (reconstructed scans: k-space filtering, interpolation) and, when it is, takes ``sigma``
    as the noise's full spread and has R2R recorrupt with noise correlated alike
    (noise_correlation.py); ``white`` takes the noise as independent from voxel to voxel. Poisson
    and speckle noise are taken as independent.
    """

    SECTION: ClassVar[str] = "noise"

    model: str = setting(
        "rician",
        choices=NOISE_MODELS,
        flags=[Flag("--noise-model", "rician (MRI, default), gaussian (CT), poisson (PET), speckle (ultrasound)", TRAINING_COMMANDS)],
        panel=Panel("modality", labels=MODALITY_NOISE_MODELS),
    )
    sigma: Optional[float] = setting(
        None,
        low=0.0,
        flags=[Flag("--noise-sigma", "noise sigma (poisson: read noise; speckle: relative spread); default: estimated", TRAINING_COMMANDS)],
    )
    gain: Optional[float] = setting(
        None, low=1e-30, flags=[Flag("--noise-gain", "poisson only: intensity per photon; default: estimated", TRAINING_COMMANDS)]
    )
    correlation: str = setting(
        "auto",
        choices=CORRELATIONS,
        flags=[
            Flag(
                "--noise-correlation",
                "gaussian and rician: auto (default) estimates whether neighbouring voxels' noise is alike; white: independent",
                TRAINING_COMMANDS,
            )
        ],
    )

    def check_rules(self) -> None:
        if self.sigma is not None and self.model == "speckle" and not self.sigma > 0:
            raise ValueError("noise.sigma for speckle is its relative spread and must be positive")
        if self.gain is not None and self.model != "poisson":
            raise ValueError("noise.gain (intensity per photon) applies to the poisson model only")
