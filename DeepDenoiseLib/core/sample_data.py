"""Paths of the sample volume shipped inside the package (see data/README.md for its origin)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
#: The noisy sample's checksum, as Slicer's Sample Data module takes it (``SHA256:<hex>``). Update it
#: with the file: Testing/slicer/test_support.py recomputes it.
NOISY_CHECKSUM = "SHA256:9d2592d07e12aaba4392f3635dbc1343f02b140f0e2ea57ff5086cc76063351b"


@dataclass(frozen=True)
class SamplePaths:
    """The noisy sample, its clean truth and the brain mask used to score it."""

    noisy: Path
    clean: Path
    mask: Path


def sample_paths() -> SamplePaths:
    """The bundled MNI152 slab with Rician noise (sigma 0.05)."""
    paths = SamplePaths(
        noisy=DATA_DIR / "mni152_slab_rician05.nii.gz",
        clean=DATA_DIR / "mni152_slab_clean.nii.gz",
        mask=DATA_DIR / "mni152_slab_mask.nii.gz",
    )
    missing = [str(p) for p in (paths.noisy, paths.clean, paths.mask) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"the bundled sample is missing ({', '.join(missing)}); reinstall DeepDenoise")
    return paths
