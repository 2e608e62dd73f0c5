"""Settings declared once. A configuration (denoise/config.py, superres/config.py) is a tree of
dataclasses whose every field is a row of its settings table, made with :func:`setting`: its type
and default, its bounds or choices, its command-line flags (with the unit they are given in) and its
place in the Slicer panel (parameter name, the words its choices are shown as, unit, bounds).

From the table the configuration validates itself (:class:`Configuration`: types, bounds, choices,
unknown keys refused when read from JSON), the command line builds its flags (cli/flags.py) and the
Slicer panel its settings and parameter node (slicer/settings.py, slicer/parameter_node.py). Rules
that tie one setting to another live in one function each, which every one of those calls.

>>> class TrainingConfig(Section):
...     SECTION = "training"
...     budget_seconds: Optional[float] = setting(240.0, low=1.0, high=WEEK_SECONDS, flags=[Flag("--budget-minutes", ...)])
>>> [row.path for row in settings_table(DenoiseConfig)][:3]
['method', 'model.noise_fusion', 'model.dimensions']
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, TypeVar, Union

#: Where torch may run; ``auto`` takes a GPU when there is one.
DEVICES = ("auto", "cuda", "mps", "cpu")
#: The panel's devices; "GPU" is CUDA, or Metal (MPS) on a Mac.
DEVICE_NAMES = {"auto": "auto", "GPU": "mps" if sys.platform == "darwin" else "cuda", "CPU": "cpu"}
#: The arithmetic networks train in (core/precision.py); ``auto`` takes bfloat16 where it is faster.
PRECISIONS = ("auto", "float32", "bfloat16")
#: The longest time budget (a week).
WEEK_SECONDS = 7 * 24 * 3600.0

Bound = Union[None, float, Callable[[Any], float]]
_METADATA_KEY = "setting"


@dataclass(frozen=True)
class Unit:
    """How a setting is shown where not in the configuration's own unit: a value shown as ``x`` is
    ``x * scale`` in the configuration (minutes to seconds: 60). ``value_words`` names some values
    (in the configuration's unit) in words, for messages."""

    name: str
    scale: float
    value_words: Mapping[float, str] = dataclasses.field(default_factory=dict)

    def to_config(self, shown: float) -> float:
        return float(shown) * self.scale

    def shown(self, value: float) -> float:
        return value / self.scale


MINUTES = Unit("minutes", 60.0, {1.0: "one second", WEEK_SECONDS: "one week"})


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets the setting, in the sub-``commands`` that offer it. ``help`` may
    name ``{default}`` (in the flag's unit); ``choices`` narrows the setting's. One flag may set
    several settings (all rows naming it)."""

    name: str
    help: str
    commands: tuple[str, ...]
    unit: Optional[Unit] = None
    choices: Optional[tuple[str, ...]] = None

    @property
    def dest(self) -> str:
        """Where argparse keeps its value."""
        return self.name.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Panel:
    """The setting in the Slicer panel: its parameter ``name`` (camelCase), the ``labels`` its choices
    are shown as (label -> value), its ``unit``, its bounds in that unit (default: the setting's), its
    ``default`` in the panel's words where it differs from the library's, and whether the parameter
    is ``shared`` by the panel's sections (the device, the seed) rather than the section's own."""

    name: str
    labels: Optional[Mapping[str, Any]] = None
    unit: Optional[Unit] = None
    low: Optional[float] = None
    high: Optional[float] = None
    default: Any = None
    shared: bool = False


@dataclass(frozen=True)
class SettingSpec:
    """A setting's metadata besides its type and default (see :func:`setting`)."""

    low: Bound = None
    high: Bound = None
    choices: Optional[tuple[str, ...]] = None
    flags: tuple[Flag, ...] = ()
    panel: Optional[Panel] = None


def setting(
    default: Any = dataclasses.MISSING,
    *,
    low: Bound = None,
    high: Bound = None,
    choices: Optional[Sequence[str]] = None,
    flags: Sequence[Flag] = (),
    panel: Optional[Panel] = None,
) -> Any:
    """A configuration field and its row of the settings table: ``default``; ``low``/``high`` bounds
    (a number, or a function of the section for a bound that depends on another setting; ``None``:
    none); ``choices``; the command-line ``flags``; its place in the ``panel``."""
    spec = SettingSpec(low, high, tuple(choices) if choices is not None else None, tuple(flags), panel)
    return dataclasses.field(default=default, metadata={_METADATA_KEY: spec})


@dataclass(frozen=True)
class Row:
    """One row of a settings table: the setting's dotted ``path`` in its configuration, its type
    (``Optional`` removed; ``optional`` says whether it takes None), its default and its metadata."""

    path: str
    kind: Any
    optional: bool
    default: Any
    spec: SettingSpec


def settings_table(config_class: type) -> list[Row]:
    """The rows of every setting of ``config_class`` and its sections, in declaration order."""
    rows = []
    hints = typing.get_type_hints(config_class)
    for item in dataclasses.fields(config_class):
        hint = hints[item.name]
        if dataclasses.is_dataclass(hints[item.name]):
            rows += [dataclasses.replace(row, path=f"{item.name}.{row.path}") for row in settings_table(hints[item.name])]
            continue
        kind, optional = _strip_optional(hint)
        default = item.default if item.default is not dataclasses.MISSING else None
        rows.append(Row(item.name, kind, optional, default, item.metadata.get(_METADATA_KEY, SettingSpec())))
    return rows


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) is Union and type(None) in typing.get_args(hint):
        return next(argument for argument in typing.get_args(hint) if argument is not type(None)), True
    return hint, False


class Section:
    """A section of a configuration (``model``, ``training``...), named ``SECTION`` in messages; its
    settings are checked against their rows by :meth:`validate`, then its own rules."""

    SECTION: ClassVar[str] = ""

    def validate(self) -> None:
        check_bounds(self, f"{self.SECTION}." if self.SECTION else "")
        self.check_rules()

    def check_rules(self) -> None:
        """Rules that tie this section's settings to each other (none by default)."""


ConfigurationType = TypeVar("ConfigurationType", bound="Configuration")


class Configuration(Section):
    """A whole configuration: validated on creation (types first, then every section's bounds and
    rules, then :meth:`check_rules`), and round-tripping through JSON, where unknown keys are refused
    so that a typo never passes silently."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_field_types(self)
        check_bounds(self, "")
        for item in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if isinstance(value, Section):
                value.check_rules()
        self.check_rules()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls: type[ConfigurationType], data: dict[str, Any]) -> ConfigurationType:
        return build_section(cls, data, "")

    @classmethod
    def from_json(cls: type[ConfigurationType], text: str) -> ConfigurationType:
        return cls.from_dict(parse_json(text))

    @classmethod
    def load(cls: type[ConfigurationType], path: Union[str, Path]) -> ConfigurationType:
        """The configuration in the JSON file at ``path``; every refusal names the file."""
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as error:
            raise FileNotFoundError(f"no configuration file at '{path}'") from error
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"could not read the configuration file '{path}': {error}") from error
        try:
            return cls.from_json(text)
        except (ValueError, TypeError) as error:
            raise ValueError(f"the configuration file '{path}': {error}") from error


def check_bounds(settings: Any, prefix: str) -> None:
    """Refuses a value of the dataclass ``settings`` (and its nested sections) outside its row's
    choices or bounds, with a ValueError naming the setting (``prefix`` + its name); a setting that
    takes None is not checked when it is None, and each element of a pair is checked alike."""
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        name = prefix + item.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_bounds(value, f"{name}.")
            continue
        spec = item.metadata.get(_METADATA_KEY)
        if spec is None or value is None:
            continue
        if spec.choices is not None:
            choice(name, value, spec.choices)
        if spec.low is not None or spec.high is not None:
            low = spec.low(settings) if callable(spec.low) else spec.low
            high = spec.high(settings) if callable(spec.high) else spec.high
            for element in value if isinstance(value, tuple) else (value,):
                in_range(name, element, float("-inf") if low is None else low, float("inf") if high is None else high)


def build_section(cls: type, data: Any, prefix: str) -> Any:
    """The dataclass ``cls`` from the mapping ``data``, nested dataclass sections built from theirs;
    ``prefix`` names the section in messages (``training.``)."""
    if not isinstance(data, dict):
        raise ValueError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(prefix + k for k in unknown)}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        nested = hints[name] if dataclasses.is_dataclass(hints[name]) else None
        kwargs[name] = build_section(nested, value, f"{name}.") if nested is not None else value
    return cls(**kwargs)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, section by section."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def put(settings: dict[str, Any], path: str, value: Any) -> None:
    """Sets the dotted ``path`` (``training.seed``) in the nested mapping ``settings``."""
    *sections, name = path.split(".")
    for section in sections:
        settings = settings.setdefault(section, {})
    settings[name] = value


def check_field_types(settings: Any, prefix: str = "", display: Optional[Callable[[str], str]] = None) -> None:
    """Refuses a value of the wrong type in the dataclass ``settings`` and its nested sections with a
    ValueError naming the setting (as ``display`` spells a field name, if given): booleans must be
    ``true``/``false`` (the string "false" would otherwise switch a setting on), whole numbers must be
    integers (not 2.5, not true), numbers may be integers or floats, strings strings; ``Optional``
    settings also take ``None``."""
    hints = typing.get_type_hints(type(settings))
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        name = prefix + (display(item.name) if display is not None else item.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_field_types(value, f"{name}.", display)
        else:
            _check_type(name, value, hints[item.name])


def _check_type(name: str, value: Any, hint: Any) -> None:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        if value is None and type(None) in arguments:
            return
        hint = next(argument for argument in arguments if argument is not type(None))
        origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false (a JSON boolean, not a string or number); got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number; got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number; got {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string; got {value!r}")
    elif origin is tuple:
        if not isinstance(value, (tuple, list)) or len(value) != len(arguments):
            raise ValueError(f"{name} must be a list of {len(arguments)} values; got {value!r}")
        for index, (element, element_hint) in enumerate(zip(value, arguments)):
            _check_type(f"{name}[{index}]", element, element_hint)


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from error


def choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def in_range(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}]; got {value}")
