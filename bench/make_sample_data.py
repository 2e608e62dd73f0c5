"""Builds the bundled sample (DeepDenoiseLib/data/) from the shared MNI152 benchmark volume.

An axial slab of the brain is cropped from ``../shared/data`` with its geometry, and Rician noise
(sigma 0.05, seed 20261122) is added with the library's own simulator. Run once; the outputs are
committed, so nothing at install or test time needs the shared folder::

    python bench/make_sample_data.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DeepDenoiseLib.core.noise_simulation import add_rician_noise

SEED = 20261122
SIGMA = 0.05
# (x, y, z) start and size of the crop in the 128^3 shared grid: the brain's in-plane extent, 48 axial slices.
CROP_START = (12, 4, 40)
CROP_SIZE = (104, 120, 48)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "DeepDenoiseLib" / "data")
    args = parser.parse_args()
    clean = sitk.ReadImage(str(args.shared / "mni152_t1_128_clean.nii.gz"), sitk.sitkFloat32)
    mask = sitk.ReadImage(str(args.shared / "mni152_t1_128_mask.nii.gz"), sitk.sitkUInt8)
    clean = sitk.RegionOfInterest(clean, CROP_SIZE, CROP_START)
    mask = sitk.RegionOfInterest(mask, CROP_SIZE, CROP_START)
    noisy_array = add_rician_noise(sitk.GetArrayFromImage(clean), SIGMA, seed=SEED)
    noisy = sitk.GetImageFromArray(noisy_array)
    noisy.CopyInformation(clean)
    args.out.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(clean, str(args.out / "mni152_slab_clean.nii.gz"), useCompression=True)
    sitk.WriteImage(mask, str(args.out / "mni152_slab_mask.nii.gz"), useCompression=True)
    sitk.WriteImage(noisy, str(args.out / "mni152_slab_rician05.nii.gz"), useCompression=True)
    print(f"wrote {args.out}: {CROP_SIZE[0]}x{CROP_SIZE[1]}x{CROP_SIZE[2]} voxels, noisy mean {np.mean(noisy_array):.4f}")


if __name__ == "__main__":
    main()
