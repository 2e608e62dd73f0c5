"""The Slicer panel's settings, in the words and units a user sees (N2V2, 3D, minutes, GPU), built from
the configurations' settings tables: every row with a ``Panel`` column becomes a panel setting with its
parameter name, labels, unit, bounds and default. :class:`PanelSettings` holds the denoising choices,
:class:`SuperResSettings` the Super-resolution section's; each turns into its configuration with
``to_config``. Imports no torch.

>>> settings = PanelSettings(method="N2V2", modality="CT", budget_minutes=2, test_time_augmentation=True)
>>> settings.to_config().training.budget_seconds
120.0
>>> SuperResSettings.from_parameters({"mode": "Self-supervised", "factor": 4}).to_config().mode
'self-supervised'
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from DeepDenoiseLib.core.settings import Row, Unit, check_field_types, put, settings_table
from DeepDenoiseLib.denoise.config import DIMENSION_NAMES, METHOD_NAMES, DenoiseConfig
from DeepDenoiseLib.denoise.method_rules import (
    MASKING_METHODS,
    METHODS_2D_ONLY,
    METHODS_TAKING,
    METHODS_USING,
    PAIRED_METHODS,
    check_dimensions,
)
from DeepDenoiseLib.denoise.noise_config import MODALITY_NOISE_MODELS
from DeepDenoiseLib.superres.config import PANEL_PREFIX, SuperResConfig


@dataclass(frozen=True)
class PanelSetting:
    """One setting of a panel section: its ``name`` (camelCase, as ``from_parameters`` takes it), its
    ``parameter`` in the module's parameter node (with the section's prefix unless shared), the
    configuration ``paths`` it sets, its Python type, its ``labels`` (shown word -> configuration
    value), ``unit``, bounds and default, in the panel's words and unit."""

    name: str
    parameter: str
    paths: tuple[str, ...]
    kind: type
    labels: Optional[Mapping[str, Any]]
    unit: Optional[Unit]
    low: Optional[float]
    high: Optional[float]
    default: Any

    @property
    def attribute(self) -> str:
        """The setting's name in snake_case (``budget_minutes``)."""
        return re.sub(r"([A-Z])", lambda match: "_" + match.group(1).lower(), self.name)

    def to_config(self, value: Any) -> Any:
        """``value`` as the configuration takes it."""
        if self.labels is not None:
            return self.labels[value]
        if self.unit is not None:
            return self.unit.to_config(value)
        return self.kind(value)


def panel_settings(config_class: type, prefix: str = "") -> list[PanelSetting]:
    """The panel settings of ``config_class``'s table, in table order; rows naming the same panel
    setting (the super-resolution seed sets training and sampling alike) make one."""
    by_name: dict[str, PanelSetting] = {}
    for row in settings_table(config_class):
        panel = row.spec.panel
        if panel is None:
            continue
        if panel.name in by_name:
            known = by_name[panel.name]
            by_name[panel.name] = dataclasses.replace(known, paths=(*known.paths, row.path))
            continue
        parameter = panel.name if panel.shared or not prefix else prefix + panel.name[0].upper() + panel.name[1:]
        kind = str if panel.labels is not None else row.kind
        by_name[panel.name] = PanelSetting(
            panel.name, parameter, (row.path,), kind, panel.labels, panel.unit, *_panel_bounds(row), _panel_default(row)
        )
    return list(by_name.values())


def _panel_bounds(row: Row) -> tuple[Optional[float], Optional[float]]:
    panel = row.spec.panel
    assert panel is not None
    if panel.labels is not None or row.kind is bool:
        return None, None
    if panel.low is not None or panel.high is not None:
        return panel.low, panel.high
    assert not callable(row.spec.low) and not callable(row.spec.high)
    return row.spec.low, row.spec.high


def _panel_default(row: Row) -> Any:
    panel = row.spec.panel
    assert panel is not None
    if panel.default is not None:
        return panel.default
    if panel.labels is not None:
        return next(label for label, value in panel.labels.items() if value == row.default)
    return panel.unit.shown(row.default) if panel.unit is not None else row.default


class SectionSettings:
    """What :class:`PanelSettings` and :class:`SuperResSettings` share: type and label checks on
    creation, the mapping from parameter-node names, and the configuration they stand for."""

    SETTINGS: ClassVar[list[PanelSetting]]

    if TYPE_CHECKING:  # the fields come from the settings table

        def __init__(self, **values: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...

    def __post_init__(self) -> None:
        by_attribute = {setting.attribute: setting.name for setting in self.SETTINGS}
        check_field_types(self, display=lambda attribute: by_attribute[attribute])  # "false" for a boolean would read as True
        for setting in self.SETTINGS:
            value = getattr(self, setting.attribute)
            if setting.labels is not None and value not in setting.labels:
                raise ValueError(f"{setting.attribute} must be one of {', '.join(setting.labels)}; got {value!r}")
        self.check_rules()

    def check_rules(self) -> None:
        """Rules between the section's settings, in the panel's words (none by default)."""

    def uses(self, path: str) -> bool:
        """Whether the configuration takes the setting at ``path`` for these choices (all by default)."""
        return True

    def config_values(self) -> dict[str, Any]:
        """The settings these choices set, by configuration section, in the configuration's units."""
        values: dict[str, Any] = {}
        for setting in self.SETTINGS:
            for path in setting.paths:
                if self.uses(path):
                    put(values, path, setting.to_config(getattr(self, setting.attribute)))
        return values

    @classmethod
    def parameter_names(cls) -> list[str]:
        """The names of these settings as ``from_parameters`` takes them (camelCase)."""
        return [setting.name for setting in cls.SETTINGS]

    @classmethod
    def from_parameters(cls, values: Mapping[str, Any]) -> Any:
        """Settings from their names (``budgetMinutes``...); missing ones keep their default."""
        by_name = {setting.name: setting.attribute for setting in cls.SETTINGS}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
        return cls(**{by_name[name]: value for name, value in values.items()})

    @classmethod
    def from_parameter_node(cls, state: Any) -> Any:
        """Settings from the module's parameter node (or any object with its attribute names)."""
        return cls(**{setting.attribute: getattr(state, setting.parameter) for setting in cls.SETTINGS})


def _settings_class(name: str, settings: list[PanelSetting], base: type, doc: str) -> Any:
    fields = [(s.attribute, s.kind, dataclasses.field(default=s.default)) for s in settings]
    cls = dataclasses.make_dataclass(name, fields, bases=(base,), namespace={"__doc__": doc, "SETTINGS": settings})
    cls.__module__ = __name__
    return cls


class _DenoiseSettings(SectionSettings):
    def check_rules(self) -> None:
        check_dimensions(METHOD_NAMES[self.method], DIMENSION_NAMES[self.dimensions], label=PANEL_METHOD.__getitem__)

    def uses(self, path: str) -> bool:
        return path not in METHODS_TAKING or METHOD_NAMES[self.method] in METHODS_TAKING[path]

    @property
    def noise_model(self) -> str:
        return MODALITY_NOISE_MODELS[self.modality]

    def to_config(self) -> DenoiseConfig:
        """The run configuration these choices stand for (validated: a bad value raises ValueError)."""
        values = self.config_values()
        return DenoiseConfig.for_method(values.pop("method"), **values)


class _SuperResSettings(SectionSettings):
    def to_config(self) -> SuperResConfig:
        """The run configuration these choices stand for (validated: a bad value raises ValueError)."""
        return SuperResConfig.from_dict(self.config_values())


PanelSettings = _settings_class(
    "PanelSettings",
    panel_settings(DenoiseConfig),
    _DenoiseSettings,
    """The module panel's denoising choices, in the words and units a user sees (N2V2, 3D, minutes, GPU).

    Defaults are the library's (the modality is the one whose noise model is the library's default).
    ``modality`` sets the configuration's noise model (:attr:`noise_model`), which Blind-spot N2V's
    fusion step assumes. A 2D-only method with 3D dimensions is refused with a ValueError. Settings
    that a method does not take are left out of its configuration (method_rules.METHODS_TAKING): the
    masked fraction for the paired methods, the architecture for the single-volume methods, the
    adversarial weight for all but Supervised.""",
)
SuperResSettings = _settings_class(
    "SuperResSettings",
    panel_settings(SuperResConfig, PANEL_PREFIX),
    _SuperResSettings,
    """The panel's super-resolution choices in the words and units a user sees; defaults are the
    library's (except the mode, self-supervised, which needs no other volume, and the axis, the
    thickest).""",
)

#: The panel's words for each method of the configuration.
PANEL_METHOD = {value: label for label, value in METHOD_NAMES.items()}
#: Panel methods whose network is 2D only; those that mask; those that learn from pairs of volumes (a
#: second acquisition, or a training pair: the architecture applies to these only); and the one whose
#: training adds the adversarial loss.
PANEL_METHODS_2D_ONLY = tuple(PANEL_METHOD[method] for method in METHODS_2D_ONLY)
PANEL_MASKING_METHODS = tuple(PANEL_METHOD[method] for method in MASKING_METHODS)
PANEL_PAIRED_METHODS = tuple(PANEL_METHOD[method] for method in PAIRED_METHODS)
#: The panel's names of each setting that changes something for some methods only, and those methods.
PANEL_METHODS_USING = {
    setting.name: tuple(PANEL_METHOD[method] for method in METHODS_USING[path])
    for setting in PanelSettings.SETTINGS
    for path in setting.paths
    if path in METHODS_USING
}
