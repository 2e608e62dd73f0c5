"""The settings tables (DeepDenoiseLib.core.settings): every setting of both configurations is declared
once, as a row with its type, default, bounds or choices, flags and panel place; validation, the
command line and the panel are derived from the rows, so the rows themselves must hold together."""

from __future__ import annotations

import dataclasses

import pytest

from DeepDenoiseLib.core.settings import MINUTES, Configuration, check_bounds, put, settings_table
from DeepDenoiseLib.denoise.config import DenoiseConfig, PredictionConfig
from DeepDenoiseLib.superres.config import SuperResConfig

TABLES = {"denoise": DenoiseConfig, "superres": SuperResConfig}


@pytest.mark.parametrize("name", TABLES)
def test_every_setting_of_a_configuration_is_one_row_with_its_default(name) -> None:
    config_class = TABLES[name]
    rows = settings_table(config_class)
    default = config_class().to_dict()
    assert len({row.path for row in rows}) == len(rows)
    for row in rows:
        section, _, field = row.path.rpartition(".")
        value = default[section][field] if section else default[field]
        assert row.default == (list(value) if isinstance(row.default, tuple) and isinstance(value, list) else value), row.path


@pytest.mark.parametrize("name", TABLES)
def test_every_row_holds_together(name) -> None:
    for row in settings_table(TABLES[name]):
        spec = row.spec
        if spec.choices is not None:
            assert row.kind is str and (row.default in spec.choices or row.default is None), row.path
        for flag in spec.flags:
            assert flag.commands and flag.name.startswith("--"), row.path
            assert flag.choices is None or set(flag.choices) <= set(spec.choices or ()), row.path
        if spec.panel is not None and spec.panel.labels is not None:
            assert set(spec.panel.labels.values()) <= set(spec.choices or spec.panel.labels.values()), row.path


@pytest.mark.parametrize("name", TABLES)
def test_the_panels_bounds_lie_within_the_settings_own(name) -> None:
    """What the panel lets a user pick, the configuration accepts (in its unit)."""
    for row in settings_table(TABLES[name]):
        panel = row.spec.panel
        if panel is None or panel.labels is not None or row.kind is bool:
            continue
        scale = panel.unit.scale if panel.unit is not None else 1.0
        for bound in (panel.low, panel.high):
            if bound is None:
                continue
            assert row.spec.low is None or bound * scale >= row.spec.low, row.path
            assert row.spec.high is None or bound * scale <= row.spec.high, row.path


def test_minutes_are_sixty_seconds_both_ways() -> None:
    assert MINUTES.to_config(2) == 120.0 and MINUTES.shown(240.0) == 4.0


def test_a_bound_may_follow_another_setting() -> None:
    with pytest.raises(ValueError, match=r"prediction.tile_overlap must lie in \[0, 32\]; got 33"):
        check_bounds(PredictionConfig(tile_size=64, tile_overlap=33), "prediction.")
    check_bounds(PredictionConfig(tile_size=128, tile_overlap=33), "prediction.")


def test_a_pair_setting_checks_each_of_its_values() -> None:
    with pytest.raises(ValueError, match=r"training.patch_size must lie in \[8, 256\]; got 4"):
        SuperResConfig.from_dict({"training": {"patch_size": [32, 4]}})


def test_a_dotted_path_lands_in_its_section() -> None:
    settings: dict = {"training": {"seed": 1}}
    put(settings, "training.device", "cpu")
    put(settings, "method", "n2v")
    assert settings == {"training": {"seed": 1, "device": "cpu"}, "method": "n2v"}


def test_both_configurations_share_one_machinery() -> None:
    assert issubclass(DenoiseConfig, Configuration) and issubclass(SuperResConfig, Configuration)
    for config_class in TABLES.values():
        config = config_class()
        assert config_class.from_json(config.to_json()) == config
        assert dataclasses.asdict(config) == config.to_dict()
