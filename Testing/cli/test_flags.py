"""The command line's setting flags come from the settings tables (DeepDenoiseLib.cli.flags): every
flag a row names is offered by the sub-commands it lists and sets that row's setting, in the
configuration's unit; one flag may set several settings."""

from __future__ import annotations

import argparse

import pytest

from DeepDenoiseLib.cli.commands import build_parser
from DeepDenoiseLib.cli.flags import flag_rows, setting_overrides
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.superres.config import SuperResConfig

COMMANDS = {"denoise": DenoiseConfig, "demo": DenoiseConfig, "n2n": DenoiseConfig, "supervised": DenoiseConfig, "apply": DenoiseConfig,
            "superres": SuperResConfig}  # fmt: skip


def subparser(command: str) -> argparse.ArgumentParser:
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices[command]


def sample(row, flag) -> tuple[list[str], object]:
    """Command-line words for the flag and the value the setting should then hold."""
    if row.kind is bool:
        return [flag.name], True
    if flag.unit is not None:
        return [flag.name, "2.5"], flag.unit.to_config(2.5)
    choices = flag.choices or row.spec.choices
    if choices is not None:
        value = next(choice for choice in choices if choice != row.default)
        return [flag.name, value], value
    number = row.spec.low if isinstance(row.spec.low, (int, float)) else 3  # the lowest the setting takes
    return [flag.name, str(number)], row.kind(number)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_a_row_names_is_offered_and_sets_its_setting(command) -> None:
    parser = subparser(command)
    offered = {option for action in parser._actions for option in action.option_strings}
    rows = flag_rows(COMMANDS[command], command)
    assert rows, command
    for flag, row in rows:
        assert flag.name in offered, (command, flag.name)
        words, value = sample(row, flag)
        args = parser.parse_args([*{"apply": ["model", "in", "out"], "supervised": ["--noisy", "a", "--clean", "b"],
                                    "n2n": ["a", "b"], "denoise": ["in", "out"], "superres": ["in", "out"]}.get(command, []), *words])  # fmt: skip
        overrides = setting_overrides(args, COMMANDS[command], command)
        section, _, name = row.path.rpartition(".")
        assert (overrides[section][name] if section else overrides[name]) == value, (command, flag.name)


def test_a_flag_not_given_leaves_the_config_files_value() -> None:
    args = subparser("denoise").parse_args(["in", "out"])
    assert setting_overrides(args, DenoiseConfig, "denoise") == {}


def test_one_seed_flag_sets_the_training_and_the_sampling_seed() -> None:
    args = subparser("superres").parse_args(["in", "out", "--seed", "7"])
    overrides = setting_overrides(args, SuperResConfig, "superres")
    assert overrides == {"training": {"seed": 7}, "sampling": {"seed": 7}}


def test_a_budget_is_refused_in_the_unit_of_its_flag() -> None:
    args = subparser("superres").parse_args(["in", "out", "--budget-minutes", "20000"])
    with pytest.raises(
        ValueError, match=r"--budget-minutes must lie between 0.0167 \(one second\) and 10080 \(one week\) minutes; got 20000"
    ):
        setting_overrides(args, SuperResConfig, "superres")


def test_the_paired_commands_offer_only_their_methods_settings() -> None:
    for command in ("n2n", "supervised"):
        offered = {option for action in subparser(command)._actions for option in action.option_strings}
        assert {"--architecture", "--loss"} <= offered and not {"--masked-fraction", "--struct-axis", "--method"} & offered
    assert "--adversarial-weight" in {option for action in subparser("supervised")._actions for option in action.option_strings}
    assert "--adversarial-weight" not in {option for action in subparser("n2n")._actions for option in action.option_strings}
    paths = {row.path for flag, row in flag_rows(DenoiseConfig, "apply")}
    assert paths == {"training.device", "training.threads", "prediction.tta"}
