"""The classical denoisers the benchmark compares against, each as a user would run it.

Every function takes the noisy volume and its :class:`~bench.variants.Variant` and returns the result
with a short note of the parameters it used (an estimated sigma, a gain), so a table can be checked.
"Estimated" means the method's usual no-reference estimate; "true" means the level used to simulate the
noise (see :func:`bm4d_true_sigma`). scikit-image, dipy and bm4d are optional (``pip install .[bench]``).
"""

from __future__ import annotations

import numpy as np

from bench.anscombe import anscombe_forward, anscombe_inverse, estimate_gain
from bench.variants import Variant, noise_psd
from DeepDenoiseLib.core.volume import Volume

Denoised = tuple[np.ndarray, str]


def slicer_anisotropic_diffusion(noisy: Volume, variant: Variant) -> Denoised:
    """Slicer's "Curvature Anisotropic Diffusion" module with its defaults (conductance 1,
    1 iteration, time step 0.0625), through the same ITK filter."""
    import SimpleITK as sitk  # here, not at the top: a GPU machine runs the benchmark without it

    image = sitk.GetImageFromArray(noisy.array.astype(np.float32))
    image.SetSpacing(noisy.spacing)
    filtered = sitk.CurvatureAnisotropicDiffusion(image, timeStep=0.0625, conductanceParameter=1.0, numberOfIterations=1)
    return sitk.GetArrayFromImage(filtered), "conductance 1, 1 iteration, time step 0.0625"


def skimage_nl_means(noisy: Volume, variant: Variant) -> Denoised:
    """scikit-image non-local means with its own sigma estimate (fast mode, 5^3 patches, 13^3 search,
    h = 0.8 sigma), as in scikit-image's own example."""
    from skimage.restoration import denoise_nl_means, estimate_sigma

    sigma = float(estimate_sigma(noisy.array))
    result = denoise_nl_means(noisy.array, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)
    return result, f"sigma {sigma:.4f}"


def dipy_nl_means(noisy: Volume, variant: Variant, threads: int, block_radius: int) -> Denoised:
    """dipy's blockwise non-local means (patch radius 1) with dipy's background-based sigma estimate:
    the Rician correction for one coil (N=1) and ``rician=True`` for Rician variants, neither
    otherwise. Block radius 5 reproduces the shared reference figures (dipy's earlier default);
    dipy 1.12 defaults to 2."""
    rician = variant.model == "rician"
    result, sigma = dipy_nlm_array(noisy.array, rician, threads, block_radius)
    return result, f"sigma {sigma:.4f}, rician={rician}"


def dipy_nlm_array(array: np.ndarray, rician: bool, threads: int, block_radius: int = 2) -> tuple[np.ndarray, float]:
    """:func:`dipy_nl_means` of an array (``rician``: magnitude data, one coil), and the sigma dipy
    estimated: for the benchmarks whose volumes are not variants (real scans, the CT-like head)."""
    from dipy.denoise.nlmeans import nlmeans
    from dipy.denoise.noise_estimate import estimate_sigma

    sigma = float(np.ravel(estimate_sigma(array, N=1 if rician else 0))[0])
    result = nlmeans(array, sigma, rician=rician, method="blockwise", patch_radius=1, block_radius=block_radius, num_threads=threads)
    return np.asarray(result, dtype=np.float32), sigma


def bm4d_estimated_sigma(noisy: Volume, variant: Variant) -> Denoised:
    """BM4D with a no-reference noise estimate. Gaussian and Rician variants: scikit-image's
    ``estimate_sigma`` (the bm4d package has no estimator of its own). Poisson: the Anscombe transform
    with the gain estimated from the data (:func:`~bench.anscombe.estimate_gain`), sigma 1 there."""
    from skimage.restoration import estimate_sigma

    if variant.is_poisson:
        gain = estimate_gain(noisy.array)
        return _bm4d_anscombe(noisy.array, gain), f"Anscombe, estimated gain {gain:.5f}, sigma 1"
    sigma = float(estimate_sigma(noisy.array))
    return _bm4d(noisy.array, sigma), f"sigma {sigma:.4f}"


def bm4d_true_sigma(noisy: Volume, variant: Variant, true_gain: float) -> Denoised:
    """BM4D told the simulated noise level: Gaussian, sigma of the noise; Rician, the sigma of the
    underlying complex Gaussian noise (no Rician transform: in tissue the noise is close to Gaussian
    with that sigma; correlated noise: its power spectral density); Poisson, the Anscombe transform
    with the true gain (``max(clean) / peak``) and sigma 1 in the transformed domain, then the exact
    unbiased inverse."""
    if variant.is_poisson:
        return _bm4d_anscombe(noisy.array, true_gain), f"Anscombe, true gain {true_gain:.5f}, sigma 1"
    if variant.correlation_width:
        import bm4d

        if not hasattr(np, "trapz"):  # bm4d 4.2's PSD path calls np.trapz, which NumPy 2 renamed
            np.trapz = np.trapezoid  # type: ignore[attr-defined]
        psd = noise_psd(variant, noisy.array.shape)
        return np.asarray(
            bm4d.bm4d(noisy.array.astype(np.float32), psd), dtype=np.float32
        ), f"the noise's true PSD, sigma {variant.level:.4f}"
    return _bm4d(noisy.array, variant.level), f"sigma {variant.level:.4f}"


def _bm4d(array: np.ndarray, sigma: float) -> np.ndarray:
    import bm4d

    return np.asarray(bm4d.bm4d(array.astype(np.float32), sigma), dtype=np.float32)


def _bm4d_anscombe(array: np.ndarray, gain: float) -> np.ndarray:
    transformed = anscombe_forward(array, gain)
    return anscombe_inverse(_bm4d(transformed, 1.0), gain).astype(np.float32)
