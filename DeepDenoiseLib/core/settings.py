"""The machinery of the configurations: building a dataclass from a JSON mapping (unknown keys refused),
type checks that refuse a string "false" for a boolean, range and choice checks with messages that name
the setting, and reading a configuration file."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Callable, Optional, Union

#: Where torch may run; ``auto`` takes a GPU when there is one.
DEVICES = ("auto", "cuda", "mps", "cpu")


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


def load_file(cls: Any, path: Union[str, Path]) -> Any:
    """``cls.from_json`` of the file at ``path``; every refusal names the file."""
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


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def in_range(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}]; got {value}")
