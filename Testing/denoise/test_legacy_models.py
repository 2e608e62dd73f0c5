"""Model files saved before the library was split into subpackages (commit 16ab2e4) still load and
give the output they gave then: a model file records configurations and network geometry, never
module paths. Testing/data holds two tiny models trained on a noisy phantom (Blind-spot N2V 2D with
noise fusion; N2V 3D) and, in legacy_models_expected.npz, the volume they were applied to and what
each returned."""

from __future__ import annotations

import numpy as np
import pytest

from DeepDenoiseLib import load_model
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise import pipeline
from DeepDenoiseLib.denoise.model_record import read_model_record
from Testing.support import TESTING
from Testing.support.phantoms import single_thread  # noqa: F401

DATA = TESTING / "data"
EXPECTED = np.load(DATA / "legacy_models_expected.npz")


@pytest.mark.parametrize("name", ["legacy_blindspot_2d", "legacy_n2v_3d"])
def test_a_model_saved_before_the_restructure_loads_and_denoises_as_it_did(name) -> None:
    path = DATA / f"{name}.safetensors"
    record = read_model_record(path)
    assert "DeepDenoiseLib" not in str(record)  # no module paths in the record
    saved = load_model(path, device="cpu")
    with pytest.MonkeyPatch.context() as patch:  # the network's output, before the self-check judges it
        patch.setattr(pipeline, "_self_check_failure", lambda *args: None)
        result = saved.apply(Volume(EXPECTED["input"], spacing=(0.9, 0.8, 2.5)))
    # PyTorch's CPU kernels sum in an order that depends on the processor's instructions: on an Intel
    # Xeon the N2V 3D output differed from the AMD EPYC's in 4 of 2048 voxels, by 3.5e-6 at most. A
    # model read wrongly would be off by orders of magnitude more.
    np.testing.assert_allclose(result.denoised.array, EXPECTED[name], rtol=1e-5, atol=2e-5)


def test_the_self_check_now_refuses_what_the_legacy_n2v_3d_model_returned() -> None:
    """That model (4 training steps, before batch-norm recalibration) returned a volume mostly 0:
    applied now, its result is judged as structure removed, and the input comes back with a warning."""
    noisy = EXPECTED["input"]
    result = load_model(DATA / "legacy_n2v_3d.safetensors", device="cpu").apply(Volume(noisy, spacing=(0.9, 0.8, 2.5)))
    assert result.summary["self_check"]["passed"] is False
    assert any("self-check failed" in warning for warning in result.summary["warnings"])
    np.testing.assert_array_equal(result.denoised.array, noisy.astype(np.float32))
    assert not np.any(result.residual.array)
