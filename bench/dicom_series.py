"""A real MR volume written as a DICOM MR series, for benchmark_real.py's DICOM row.

No real multi-slice MR DICOM series is available without a download: the test files that pydicom,
pydicom-data and nibabel ship are single slices, or series whose pixels are synthetic or zeroed. So
the benchmark takes a real MR volume stored as integers (nibabel's EPI frame), writes it as a
scanner would (one 16-bit MR file per slice, with position, orientation and spacing; unsigned
unless the volume has negative values) and has DeepDenoise read the folder, as a
user's exported series is read. What is measured is the DICOM route on real MR noise, not a scanner's
own export.

DICOM's slice normal is always the row direction crossed with the column direction, so a volume on a
left-handed grid (nibabel's EPI is one) comes back with its slices in the other order: every voxel
at the same place in space, the first slice read being the last one written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DeepDenoiseLib.core.volume import Volume

#: DICOM's identifiers for the series written (the project's own root, not a scanner's).
STUDY_UID = "1.2.826.0.1.3680043.2.1125.7.1"
SERIES_UID = "1.2.826.0.1.3680043.2.1125.7.1.1"


def write_mr_series(volume: Volume, folder: Path) -> list[Path]:
    """Writes ``volume`` (3D, integer-valued intensities) into ``folder`` as one 16-bit MR file per
    slice (uint16, or int16 when some value is negative); returns the files. Refuses intensities that
    16 bits cannot hold exactly, since the series is meant to carry the volume unchanged."""
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise ValueError(f"a DICOM series holds a 3D volume; got shape {array.shape}")
    if not np.array_equal(array, np.round(array)):
        raise ValueError("the volume has non-integer intensities, which a 16-bit series would change")
    low, high = int(array.min()), int(array.max())
    pixel = np.iinfo(np.uint16 if low >= 0 else np.int16)
    if low < pixel.min or high > pixel.max:
        raise ValueError(f"the intensity range {low}..{high} does not fit 16 bits")
    stored = array.astype(pixel.dtype)
    image = sitk.GetImageFromArray(stored)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(float(value) for value in volume.direction.ravel()))
    columns = volume.direction[:, 0], volume.direction[:, 1]  # the i and j axes' directions (LPS)
    orientation = "\\".join(f"{value:.6f}" for axis in columns for value in axis)
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(stored.shape[0]):
        image_slice = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "MR",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
            "0008|0018": f"{SERIES_UID}.{k + 1}",
            "0020|000d": STUDY_UID,
            "0020|000e": SERIES_UID,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{value:.6f}" for value in position),
            "0020|0037": orientation,
            "0028|0030": f"{volume.spacing[1]}\\{volume.spacing[0]}",
            "0018|0050": str(volume.spacing[2]),
        }
        for tag, value in tags.items():
            image_slice.SetMetaData(tag, value)
        path = folder / f"slice_{k + 1:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(image_slice)
        files.append(path)
    return files
