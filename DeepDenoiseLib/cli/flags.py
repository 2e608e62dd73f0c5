"""The command-line flags of the settings, built from a configuration's settings table (core/settings.py):
each row names its flags and the sub-commands that offer them, so a setting is declared once.

>>> add_setting_flags(group, DenoiseConfig, "denoise")        # --dims, --budget-minutes, ...
>>> overrides = setting_overrides(args, DenoiseConfig, "denoise")  # {"training": {"budget_seconds": 120.0}}
"""

from __future__ import annotations

import argparse
from typing import Any, Optional, Union

from DeepDenoiseLib.core.settings import Flag, Row, Unit, put, settings_table


def flag_rows(config_class: type, command: str) -> list[tuple[Flag, Row]]:
    """Every flag ``command`` offers for the settings of ``config_class``, with its row, in table order
    (a flag that sets several settings comes once per setting)."""
    return [(flag, row) for row in settings_table(config_class) for flag in row.spec.flags if command in flag.commands]


def add_setting_flags(group: Union[argparse.ArgumentParser, argparse._ArgumentGroup], config_class: type, command: str) -> None:
    """Adds to ``group`` the flags ``command`` offers for the settings of ``config_class``: a switch for
    a boolean (unset: None, so the ``--config`` file's value stays), a number or a choice otherwise."""
    added = set()
    for flag, row in flag_rows(config_class, command):
        if flag.name in added:
            continue
        added.add(flag.name)
        default = row.default if flag.unit is None or row.default is None else flag.unit.shown(row.default)
        options: dict[str, Any] = {"help": flag.help.format(default=default)}
        if row.kind is bool:
            options.update(action="store_true", default=None)
        else:
            if flag.unit is not None or row.kind is not str:
                options["type"] = float if flag.unit is not None else row.kind
            choices = flag.choices or row.spec.choices
            if choices is not None:
                options["choices"] = choices
        group.add_argument(flag.name, **options)


def setting_overrides(args: argparse.Namespace, config_class: type, command: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings given on the command line as a nested mapping in the configuration's units (flags
    not given are left out), but those in ``skip`` (dotted paths). A value given in a unit of its own
    (``--budget-minutes``) is refused in that unit when the setting's bounds exclude it."""
    overrides: dict[str, Any] = {}
    for flag, row in flag_rows(config_class, command):
        value = getattr(args, flag.dest, None)
        if value is None or row.path in skip:
            continue
        put(overrides, row.path, value if flag.unit is None else _in_config_units(flag, flag.unit, row, value))
    return overrides


def _in_config_units(flag: Flag, unit: Unit, row: Row, shown: float) -> float:
    low, high = row.spec.low, row.spec.high
    assert not callable(low) and not callable(high), "a flag with a unit needs fixed bounds"
    if (low is not None and shown < unit.shown(low)) or (high is not None and shown > unit.shown(high)):
        raise ValueError(
            f"{flag.name} must lie between {_bound(unit, low, '.3g')} and {_bound(unit, high, 'g')} {unit.name}; got {shown:g}"
        )
    return unit.to_config(shown)


def _bound(unit: Unit, value: Optional[float], spec: str) -> str:
    if value is None:
        return "no limit"
    words = unit.value_words.get(value)
    return format(unit.shown(value), spec) + (f" ({words})" if words else "")
