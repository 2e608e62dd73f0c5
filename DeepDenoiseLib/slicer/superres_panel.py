"""What the panel's Super-resolution section decides, kept out of Qt so that it can be tested: which of
its controls apply to the current choices, what its button will do, the run it starts (which node,
which training volume, which outputs, which settings), and what the panel shows afterwards.

The section's state is read by parameter-node name from any object that has those attributes (the
module's parameter node, or a namespace in tests). Its names start with ``superres`` so that they
never clash with the denoising settings; the device and the seed are the module's own (``device``,
``seed``), shared with denoising. Like the other modules of the Slicer side, this one imports Slicer
only through the helpers it calls.

>>> run = plan_superres_run(parameterNode)
>>> logic.superResolve(**run.logic_arguments(), waitForCompletion=False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from DeepDenoiseLib.core.progress import warning_sentences
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.slicer.settings import SuperResSettings
from DeepDenoiseLib.slicer.superres_job import resolve_axis
from DeepDenoiseLib.superres.config import AXIS_NAMES, MODE_NAMES, SUPERRES_METHOD_NAMES, cascade_fits
from DeepDenoiseLib.superres.grid import AXIS_IJK, MIN_COARSE_VOXELS

#: The parameter-node name of each SuperResSettings field (from the settings table).
PARAMETER_OF_SETTING = {setting.attribute: setting.parameter for setting in SuperResSettings.SETTINGS}
#: The section's nodes and output switch (not settings of the run itself).
SUPERRES_NODES = ("superresInputVolume", "superresTrainingVolume", "superresOutputVolume", "superresUncertaintyVolume")
SUPERRES_SWITCHES = ("superresComputeUncertainty",)
#: The panel's names of the modes and methods.
SELF_SUPERVISED, SUPERVISED = (name for value in ("self-supervised", "supervised") for name in MODE_NAMES if MODE_NAMES[name] == value)
DDPM, REGRESSION = (name for value in ("ddpm", "regression") for name in SUPERRES_METHOD_NAMES if SUPERRES_METHOD_NAMES[name] == value)


def section_defaults() -> dict[str, Any]:
    """The section's parameters at the library's defaults (SuperResSettings), by parameter name."""
    return {setting.parameter: setting.default for setting in SuperResSettings.SETTINGS}


def superres_settings(state: Any) -> Any:
    """The section's settings from the parameter node (ValueError for a value the library refuses)."""
    return SuperResSettings.from_parameter_node(state)


def samples_diffusion(state: Any) -> bool:
    return state.superresMethod == DDPM


def superres_enabled_settings(state: Any) -> dict[str, bool]:
    """Which of the section's controls are editable: the sampling settings and the uncertainty output
    only for DDPM (the regression baseline draws no samples); the cascade only for a power-of-two
    factor (it splits the factor into x2 stages), and always while ticked, so it can be unticked."""
    diffusion = samples_diffusion(state)
    return {
        "superresSamplingSteps": diffusion,
        "superresSamples": diffusion,
        "superresComputeUncertainty": diffusion,
        "superresUncertaintyVolume": diffusion and bool(state.superresComputeUncertainty),
        "superresCascade": cascade_fits(int(state.superresFactor)) or bool(state.superresCascade),
    }


def superres_visible_settings(state: Any) -> dict[str, bool]:
    """The training-volume selector is shown in the supervised mode only."""
    return {"superresTrainingVolume": state.superresMode == SUPERVISED}


def superres_tooltip(state: Any) -> str:
    """What the section's button will do, or what it needs first."""
    node = state.superresInputVolume
    if node is None:
        return "Select the volume to make finer"
    factor = int(state.superresFactor)
    source = "the high-resolution training volume" if state.superresMode == SUPERVISED else "its own in-plane detail"
    return (
        f"Make '{node.GetName()}' {factor} times finer along its thickest axis or the chosen one, learning from {source}, in the background"
    )


@dataclass
class SuperResRun:
    """What the section's button hands to ``DeepDenoiseLogic.superResolve`` (see :meth:`logic_arguments`)."""

    input_node: Any
    settings: SuperResSettings
    training_node: Optional[Any] = None
    output_node: Optional[Any] = None
    uncertainty_node: Optional[Any] = None
    compute_uncertainty: bool = False

    def logic_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``DeepDenoiseLogic.superResolve``."""
        return {
            "inputVolume": self.input_node,
            "parameters": self.settings,
            "trainingVolumes": [self.training_node] if self.training_node is not None else [],
            "outputVolume": self.output_node,
            "uncertaintyVolume": self.uncertainty_node,
            "computeUncertainty": self.compute_uncertainty,
        }


def plan_superres_run(state: Any) -> SuperResRun:
    """The run for the section's ``state``.

    Raises :class:`InputError` saying what to do for: no input; a supervised run without a training
    volume, or with the input as its own training volume; an input with fewer than
    ``MIN_COARSE_VOXELS`` voxels along the refined axis; an output or uncertainty node that is the
    input. ``ValueError`` for settings that do not go together (a cascade with a factor that is not a
    power of two). The uncertainty output is asked for only with DDPM, whose samples it is the
    spread of; the training volume is passed only in the supervised mode.
    """
    node = state.superresInputVolume
    if node is None:
        raise InputError("Select the volume to make finer.")
    settings = superres_settings(state)
    settings.to_config()  # refuses settings that do not go together, before anything starts
    axis = resolve_axis(node, AXIS_NAMES[settings.axis])
    dimensions = node.GetImageData().GetDimensions() if node.GetImageData() is not None else (0, 0, 0)
    length = int(dimensions[AXIS_IJK[axis]])
    if length < MIN_COARSE_VOXELS:
        raise InputError(
            f"'{node.GetName()}' has {length} voxel(s) along {axis.upper()}; super-resolution needs at least "
            f"{MIN_COARSE_VOXELS} along the axis it refines. Choose another axis."
        )
    run = SuperResRun(input_node=node, settings=settings, output_node=state.superresOutputVolume)
    if state.superresMode == SUPERVISED:
        training = state.superresTrainingVolume
        if training is None:
            raise InputError(
                "Supervised super-resolution learns from a high-resolution volume of similar anatomy: choose "
                "the training volume, or switch to Self-supervised, which learns from the input's own in-plane detail."
            )
        if training is node:
            raise InputError("The training volume must be a high-resolution volume other than the input.")
        run.training_node = training
    if samples_diffusion(state) and state.superresComputeUncertainty:
        run.compute_uncertainty = True
        run.uncertainty_node = state.superresUncertaintyVolume
    for role, output in (("output", run.output_node), ("uncertainty", run.uncertainty_node)):
        if output is not None and output is node:
            raise InputError(f"The {role} volume must differ from the input; choose 'Create new volume'.")
    return run


def superres_parameters_after_run(run: SuperResRun, result: Any) -> dict[str, Any]:
    """The parameter-node values to set once ``run`` succeeded: the nodes it filled or created."""
    updates: dict[str, Any] = {"superresOutputVolume": result.output_node}
    if run.compute_uncertainty and result.uncertainty_node is not None:
        updates["superresUncertaintyVolume"] = result.uncertainty_node
    return updates


def superres_summary_text(summary: Mapping[str, Any]) -> str:
    """One line for the panel's status from a super-resolution run's summary."""
    parts = []
    if "seconds" in summary:
        parts.append(f"Done in {summary['seconds']:.0f} s.")
    before, after = summary.get("input_shape_kji"), summary.get("output_shape_kji")
    if before and after:
        parts.append(f"{'x'.join(map(str, before[::-1]))} -> {'x'.join(map(str, after[::-1]))} voxels.")
    spacing = summary.get("output_spacing")
    if spacing:
        parts.append(f"New spacing {' x '.join(f'{value:.3g}' for value in spacing)} mm.")
    if summary.get("training_steps"):
        parts.append(f"{summary['training_steps']} training steps.")
    parts += warning_sentences(summary)
    return " ".join(parts) or "Done."
