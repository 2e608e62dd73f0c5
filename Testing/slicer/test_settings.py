"""The panel's settings (DeepDenoiseLib.slicer.settings): the choices in the panel's words become a
validated configuration with the library's defaults, each method and dimension maps to the library or
is refused clearly, and each modality preset sets its noise model."""

from __future__ import annotations

import dataclasses

import pytest

from DeepDenoiseLib.denoise.config import DIMENSION_NAMES, METHOD_NAMES, METHODS, PAIRED_METHODS, DenoiseConfig
from DeepDenoiseLib.denoise.noise_config import MODALITY_NOISE_MODELS, NOISE_MODELS
from DeepDenoiseLib.slicer.settings import PANEL_METHODS_2D_ONLY, PANEL_PAIRED_METHODS, PanelSettings

# --- Settings --------------------------------------------------------------------------------------


def test_panel_settings_become_a_validated_config():
    settings = PanelSettings.from_parameters(
        {"method": "structN2V", "dimensions": "3D", "modality": "MRI", "budgetMinutes": 2.5, "device": "CPU",
         "patchSize": 32, "batchSize": 8, "learningRate": 4e-4, "maskedFraction": 0.05,
         "testTimeAugmentation": True, "seed": 7}
    )  # fmt: skip
    config = settings.to_config()
    assert config.method == "structn2v" and config.masking.struct_axis is not None
    assert config.model.dimensions == "3d"
    assert config.training.budget_seconds == 150.0 and config.training.device == "cpu"
    assert (config.training.patch_size, config.training.batch_size, config.training.seed) == (32, 8, 7)
    assert config.training.learning_rate == 4e-4 and config.masking.masked_fraction == 0.05
    assert config.prediction.tta is True
    assert config.noise.model == "rician" and config.noise.sigma is None

    with pytest.raises(ValueError, match="unknown setting"):
        PanelSettings.from_parameters({"budget": 3})
    with pytest.raises(ValueError, match="modality"):
        PanelSettings(modality="X-ray")
    with pytest.raises(ValueError, match="budget_seconds"):
        PanelSettings(budget_minutes=0.001).to_config()


def test_panel_defaults_are_the_library_defaults():
    settings = PanelSettings()
    assert settings.method == next(iter(METHOD_NAMES)) == "Pretrained R2R"  # the default comes first
    assert settings.to_config() == DenoiseConfig()  # every panel setting, noise model included


def test_panel_choices_cover_the_library():
    assert sorted(METHOD_NAMES.values()) == sorted(METHODS)
    assert {METHOD_NAMES[name] for name in PANEL_PAIRED_METHODS} == set(PAIRED_METHODS)
    assert sorted(DIMENSION_NAMES.values()) == ["2d", "3d"]
    assert set(MODALITY_NOISE_MODELS.values()) <= set(NOISE_MODELS)
    # The panel calls 2D-only exactly the methods the library refuses in 3D.
    for name, method in METHOD_NAMES.items():
        if name in PANEL_METHODS_2D_ONLY:
            with pytest.raises(ValueError):
                DenoiseConfig.for_method(method, model={"dimensions": "3d"})
        else:
            assert DenoiseConfig.for_method(method, model={"dimensions": "3d"}).model.dimensions == "3d"


@pytest.mark.parametrize("name", list(METHOD_NAMES))
@pytest.mark.parametrize("dimensions", list(DIMENSION_NAMES))
def test_every_method_and_dimension_maps_to_the_library_or_is_refused_clearly(name, dimensions):
    if name in PANEL_METHODS_2D_ONLY and dimensions == "3D":
        with pytest.raises(ValueError) as refusal:
            PanelSettings(method=name, dimensions=dimensions)
        message = str(refusal.value)
        assert f"{name} is a 2D method" in message and "choose 2D" in message
        assert all(other in message for other in METHOD_NAMES if other not in PANEL_METHODS_2D_ONLY)
        return
    settings = PanelSettings(method=name, dimensions=dimensions, masked_fraction=0.03)
    config = settings.to_config()
    library = DenoiseConfig.for_method(METHOD_NAMES[name], model={"dimensions": DIMENSION_NAMES[dimensions]})
    assert config.method == METHOD_NAMES[name]
    assert config.model == library.model  # N2V2's blur-pool and missing top skip come with the method
    # The paired methods and MP-PCA mask nothing, and refuse masking settings: the masked fraction stays out.
    masked_fraction = library.masking.masked_fraction if name in PANEL_PAIRED_METHODS + ("MP-PCA (series)",) else 0.03
    assert config.masking == dataclasses.replace(library.masking, masked_fraction=masked_fraction)


@pytest.mark.parametrize(
    "modality, noise_model",
    [("MRI", "rician"), ("CT", "gaussian"), ("PET", "poisson"), ("ultrasound", "speckle"), ("generic", "gaussian")],
)
def test_every_modality_preset_sets_the_noise_model(modality, noise_model):
    assert list(MODALITY_NOISE_MODELS) == ["MRI", "CT", "PET", "ultrasound", "generic"]
    settings = PanelSettings(modality=modality)
    config = settings.to_config()
    assert settings.noise_model == config.noise.model == noise_model
    assert config.noise.sigma is None  # estimated from the volume's foreground
    assert DenoiseConfig.from_json(config.to_json()).noise.model == noise_model  # the worker gets it
