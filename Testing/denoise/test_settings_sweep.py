"""Every network setting the configuration accepts (method, dimensions, depth, channels, where R2R
starts) either is refused before training, with a message naming the setting, or gives a result that
is not worse than its input on a small noisy phantom after a few training steps: better, or the input
itself, returned with the self-check's warning. Nothing in between: never silently worse."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from DeepDenoiseLib.core.metrics import psnr
from DeepDenoiseLib.core.settings import settings_table
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.config import DIMENSIONS, DenoiseConfig, ModelConfig
from DeepDenoiseLib.denoise.method_rules import MAX_WIDEST_CHANNELS, SINGLE_VOLUME_METHODS
from DeepDenoiseLib.denoise.pipeline import denoise_volume
from Testing.support.phantoms import noisy_phantom, single_thread, tiny_config_dict  # noqa: F401

ROWS = {row.path: row.spec for row in settings_table(ModelConfig)}
DEPTH, CHANNELS = ROWS["depth"], ROWS["base_channels"]


def sweep() -> list[tuple[str, dict[str, Any]]]:
    """Every method and dimensions at every accepted depth with the fewest channels, and in 2D at the
    shallowest and deepest with the most channels allowed (the most channels; the widest bottleneck);
    R2R from random weights too, and from its prior as shipped."""
    cases: list[tuple[str, dict[str, Any]]] = [("r2r", {})]
    for method in SINGLE_VOLUME_METHODS:
        start = {"init": "random"} if method == "r2r" else {}
        for dimensions in DIMENSIONS:
            for depth in range(DEPTH.low, DEPTH.high + 1):
                widths = {CHANNELS.low}
                if dimensions == "2d" and depth in (DEPTH.low, DEPTH.high):  # the most channels, the widest bottleneck
                    widths.add(min(CHANNELS.high, MAX_WIDEST_CHANNELS // 2**depth))
                for width in sorted(widths):
                    cases.append((method, {**start, "dimensions": dimensions, "depth": depth, "base_channels": width}))
    return cases


@pytest.fixture(scope="module")
def phantom() -> tuple[np.ndarray, np.ndarray]:
    return noisy_phantom((8, 32, 32), sigma=0.1, seed=7)


@pytest.mark.parametrize(
    "method, model", sweep(), ids=lambda value: value if isinstance(value, str) else "-".join(map(str, value.values()))
)
def test_every_accepted_network_setting_is_refused_or_not_worse_than_its_input(method, model, phantom) -> None:
    clean, noisy = phantom
    settings = tiny_config_dict(method, noise={"model": "gaussian"})
    settings["model"] = model
    settings["training"]["patch_size"] = 32  # every accepted depth fits
    try:
        config = DenoiseConfig.for_method(method, **settings)
    except ValueError as error:
        assert "model." in str(error) or "2D method" in str(error), error  # refused, naming what to change
        return
    result = denoise_volume(Volume(noisy), config)
    before = psnr(clean, noisy, data_range=1.0)
    after = psnr(clean, result.denoised.array, data_range=1.0)
    if result.summary["self_check"]["passed"]:
        assert after > before, (before, after, result.summary["self_check"])
    else:
        assert any("self-check failed" in warning for warning in result.summary["warnings"])
        np.testing.assert_array_equal(result.denoised.array, noisy)
