"""The benchmark's noisy variants of the shared MNI152 volume, built the same way on every run.

``rician05`` and ``rician10`` are the shared files themselves (see ../shared/README.md); ``gaussian07``
and ``poisson60`` are generated in memory from the clean volume with the library's seeded simulators,
so every run and every machine scores the same voxels. A centre crop (``crop``) is cut after the noise
is added, so a cropped run sees exactly the noise of the full run in that region.

The held-out variants (``held_out``) were never used to choose a setting: other noise levels, and the
clean volume resampled to a coarser grid (``spacing_mm``), generated with the same seeded simulators.
They check that what was tuned on the four carries over; only other subjects would check more, and
none is available here.

``rician05_correlated`` has noise correlated between neighbouring voxels, as reconstructed scans do
(k-space filtering, interpolation): each channel of the complex noise is white noise convolved with a
Gaussian of ``correlation_width`` voxels, scaled back to the spread ``level``, so the correlation is
0.5 one voxel apart and 0.06 two apart (:func:`correlated_noise`).

Where the shared folder cannot travel (a GPU machine reached through the device tool, which has no
SimpleITK), the same volumes go as one bundle file (bench/gpu_bundle.py): ``--shared`` may name it
instead of the folder, and nothing then reads a NIfTI file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from DeepDenoiseLib.core.noise_simulation import add_gaussian_noise, add_poisson_noise, add_rician_noise
from DeepDenoiseLib.core.volume import Volume

CLEAN_FILE = "mni152_t1_128_clean.nii.gz"
MASK_FILE = "mni152_t1_128_mask.nii.gz"
GAUSSIAN_SEED = 7007
POISSON_SEED = 6060
RICIAN_SEED = 5050
#: The shared volumes' voxel size.
SHARED_SPACING_MM = 1.5
#: The suffix of a bundle of the shared volumes (bench/gpu_bundle.py), which ``--shared`` may name.
BUNDLE_SUFFIX = ".npz"
#: The shared files a bundle holds, by the key it holds each under.
BUNDLED_FILES = {
    "clean": CLEAN_FILE,
    "mask": MASK_FILE,
    "rician05": "mni152_t1_128_rician05.nii.gz",
    "rician10": "mni152_t1_128_rician10.nii.gz",
}


@dataclass(frozen=True)
class Variant:
    """One noisy version of the clean volume. ``model`` is the noise model a denoiser should assume
    (``noise.model`` of a DeepDenoise run); ``level`` is its sigma in intensity units, or for
    ``poisson`` the expected photon count at the brightest voxel (``peak``). ``spacing_mm``: the grid
    the clean volume and the mask are resampled to first; ``held_out``: never used to tune a setting."""

    name: str
    title: str
    model: str
    level: float
    spacing_mm: float = SHARED_SPACING_MM
    held_out: bool = False
    #: The width (voxels) of the Gaussian that correlates the noise; 0: white noise.
    correlation_width: float = 0.0

    @property
    def is_poisson(self) -> bool:
        return self.model == "poisson"


VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant("rician05", "Rician 5 %", "rician", 0.05),
        Variant("rician10", "Rician 10 %", "rician", 0.10),
        Variant("gaussian07", "Gaussian 7 %", "gaussian", 0.07),
        Variant("poisson60", "Poisson, peak 60 photons", "poisson", 60.0),
        Variant("rician07", "Rician 7 % (held out)", "rician", 0.07, held_out=True),
        Variant("rician05_2mm", "Rician 5 %, 2 mm grid (held out)", "rician", 0.05, spacing_mm=2.0, held_out=True),
        Variant("gaussian04", "Gaussian 4 % (held out)", "gaussian", 0.04, held_out=True),
        Variant("poisson20", "Poisson, peak 20 photons (held out)", "poisson", 20.0, held_out=True),
        Variant("rician05_correlated", "Rician 5 %, correlated (held out)", "rician", 0.05, held_out=True, correlation_width=0.6),
    )
}
#: The variants the settings were tuned on (the default of the benchmarks' --variants).
TUNING_VARIANTS = [name for name, variant in VARIANTS.items() if not variant.held_out]
HELD_OUT_VARIANTS = [name for name, variant in VARIANTS.items() if variant.held_out]


class SharedDataMissing(FileNotFoundError):
    """The shared benchmark volumes are not where the benchmark was told to look."""


@dataclass
class BenchData:
    """The clean volume and the brain mask (scores are computed inside it) on one grid."""

    clean: Volume
    mask: np.ndarray


def load_bench_data(shared_dir: Path) -> BenchData:
    """Reads the clean volume and the brain mask (from the folder, or from a bundle file), with a
    message saying what to do when they are missing."""
    if shared_dir.suffix == BUNDLE_SUFFIX:
        return BenchData(bundled_volume(shared_dir, "clean"), bundled_volume(shared_dir, "mask").array > 0)
    missing = [name for name in (CLEAN_FILE, MASK_FILE) if not (shared_dir / name).is_file()]
    if missing:
        raise SharedDataMissing(
            f"the shared benchmark data is not in {shared_dir} (missing {', '.join(missing)}). "
            "The benchmark needs the project's shared folder (../shared/data beside the repository; "
            "see ../shared/README.md); pass its location with --shared DIR."
        )
    from DeepDenoiseLib.core.volume_io import read_volume  # SimpleITK: not needed for a bundle

    clean = read_volume(shared_dir / CLEAN_FILE)
    mask = read_volume(shared_dir / MASK_FILE).array > 0
    return BenchData(clean, mask)


def bundled_volume(bundle: Path, key: str) -> Volume:
    """One of :data:`BUNDLED_FILES` from a bundle written by bench/gpu_bundle.py, on the shared grid."""
    if not bundle.is_file():
        raise SharedDataMissing(f"the bundle of the shared volumes {bundle} is missing; write it with bench/gpu_bundle.py")
    with np.load(bundle) as arrays:
        if key not in arrays:
            raise SharedDataMissing(f"{bundle} holds no {key!r} volume; write it again with bench/gpu_bundle.py")
        return Volume(arrays[key], tuple(arrays["spacing"]), tuple(arrays["origin"]), arrays["direction"])  # type: ignore[arg-type]


def variant_truth(variant: Variant, data: BenchData) -> BenchData:
    """The clean volume and mask ``variant`` is scored on: the shared ones, or both resampled (linear
    interpolation; the mask where its interpolated value passes 0.5) to ``variant.spacing_mm``."""
    if variant.spacing_mm == SHARED_SPACING_MM:
        return data
    from scipy import ndimage

    factor = SHARED_SPACING_MM / variant.spacing_mm
    clean = ndimage.zoom(data.clean.array.astype(np.float64), factor, order=1).astype(np.float32)
    mask = ndimage.zoom(data.mask.astype(np.float64), factor, order=1) > 0.5
    spacing = (variant.spacing_mm,) * 3
    return BenchData(Volume(clean, spacing, data.clean.origin, data.clean.direction.copy()), mask)


def make_noisy(variant: Variant, clean: Volume, shared_dir: Path) -> Volume:
    """The noisy volume of ``variant`` on the grid of ``clean`` (its :func:`variant_truth`): read (the
    shared Rician files) or generated (seeded)."""
    if variant.correlation_width:
        if variant.model != "rician":
            raise ValueError(f"no recipe for correlated {variant.model} noise")
        rng = np.random.default_rng(RICIAN_SEED)
        real, imaginary = (variant.level * correlated_noise(clean.array.shape, variant.correlation_width, rng) for _ in range(2))
        return clean.with_array(np.sqrt((clean.array + real) ** 2 + imaginary**2).astype(np.float32))
    if variant.model == "rician" and variant.held_out:
        return clean.with_array(add_rician_noise(clean.array, variant.level, seed=RICIAN_SEED))
    if variant.model == "rician" and shared_dir.suffix == BUNDLE_SUFFIX:
        return clean.with_array(bundled_volume(shared_dir, variant.name).array.astype(np.float32))
    if variant.model == "rician":
        from DeepDenoiseLib.core.volume_io import read_volume  # SimpleITK: not needed for a bundle

        path = shared_dir / f"mni152_t1_128_{variant.name}.nii.gz"
        if not path.is_file():
            raise SharedDataMissing(f"the shared noisy volume {path.name} is not in {shared_dir}; pass --shared DIR")
        noisy = read_volume(path)
        if noisy.array.shape != clean.array.shape:
            raise ValueError(f"{path.name} has shape {noisy.array.shape}, the clean volume {clean.array.shape}")
        return clean.with_array(noisy.array.astype(np.float32))
    if variant.model == "gaussian":
        return clean.with_array(add_gaussian_noise(clean.array, variant.level, seed=GAUSSIAN_SEED))
    if variant.model == "poisson":
        return clean.with_array(add_poisson_noise(clean.array, variant.level, seed=POISSON_SEED))
    raise ValueError(f"no recipe for noise model {variant.model!r}")


def correlation_kernel(width: float) -> np.ndarray:
    """The separable 3D Gaussian of ``width`` voxels (to 4 voxels each side), of unit energy: white
    noise convolved with it keeps unit variance, with correlation ``exp(-d**2 / (4 width**2))``."""
    taps = np.exp(-(np.arange(-4, 5) ** 2) / (2.0 * width**2))
    kernel = taps[:, None, None] * taps[None, :, None] * taps[None, None, :]
    return kernel / np.sqrt(np.sum(kernel**2))


def correlated_noise(shape: tuple[int, ...], width: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise correlated by :func:`correlation_kernel` (periodic at the edges)."""
    from scipy import ndimage

    return ndimage.convolve(rng.standard_normal(shape), correlation_kernel(width), mode="wrap")


def ct_like(template: np.ndarray) -> np.ndarray:
    """A CT-like head in Hounsfield units from the template: air at -1000 HU, soft tissue at 0 to 40 HU
    (40 times the T1 intensity), and a 4-voxel skull shell at 1200 HU around the head."""
    from scipy import ndimage

    head = ndimage.binary_fill_holes(ndimage.uniform_filter(template, 3) > 0.05)
    shell = ndimage.binary_dilation(head, iterations=4) & ~head
    volume = np.where(head, 40.0 * template, -1000.0).astype(np.float32)
    volume[shell] = 1200.0
    return volume


def noise_psd(variant: Variant, shape: tuple[int, ...]) -> np.ndarray:
    """The power spectral density of ``variant``'s noise on a grid of ``shape``, as BM4D takes it for
    correlated noise: ``level**2`` times the kernel's squared Fourier magnitude times the number of
    voxels (the scaling of the bm3d/bm4d packages' own examples)."""
    kernel = correlation_kernel(variant.correlation_width)
    padded = np.zeros(shape)
    padded[tuple(slice(0, n) for n in kernel.shape)] = kernel
    padded = np.roll(padded, [-(n // 2) for n in kernel.shape], axis=(0, 1, 2))
    return variant.level**2 * np.abs(np.fft.fftn(padded)) ** 2 * float(np.prod(shape))


def poisson_gain(variant: Variant, clean: np.ndarray) -> float:
    """The true intensity of one photon in ``variant``'s Poisson volume: ``add_poisson_noise`` scales the
    clean maximum to ``peak`` photons, so one photon is ``max(clean) / peak``."""
    if not variant.is_poisson:
        raise ValueError(f"{variant.name} is not a Poisson variant")
    return float(np.max(clean)) / variant.level


def centre_block(shape: tuple[int, ...], size: int) -> tuple[slice, ...]:
    """The slices of the central ``size``-voxel block of an array of ``shape`` (an axis shorter than
    ``size`` is kept whole)."""
    if size < 1:
        raise ValueError(f"the crop size must be a positive number of voxels; got {size}")
    return tuple(slice(max((extent - size) // 2, 0), max((extent - size) // 2, 0) + size) for extent in shape)


def centre_crop(volume: Volume, size: int) -> Volume:
    """The central ``size``^3 block of ``volume``, with the origin moved to the block's first voxel so
    that every voxel stays where it was in the world."""
    block = centre_block(volume.array.shape, size)
    offset_ijk = np.asarray([s.start for s in block][::-1], dtype=np.float64) * np.asarray(volume.spacing)
    origin = np.asarray(volume.origin) + volume.direction @ offset_ijk
    return Volume(
        np.ascontiguousarray(volume.array[block]),
        volume.spacing,
        tuple(origin),
        volume.direction.copy(),
        dict(volume.metadata),
    )
