"""What the Slicer panel decides, kept out of Qt so that it can be tested: how the saved models are
listed, the default name of a model to keep, which controls apply to the current choices, the run
that Apply starts (which node, which outputs, which model to apply or to save), and what the panel
shows afterwards.

The panel's state is read by parameter-node name (``inputVolume``, ``modelSource``, ``method``...)
from any object that has those attributes: the module's parameter node, or a namespace in tests.
Like the other modules of the Slicer side, this one imports Slicer only inside functions.

>>> run = plan_run(parameterNode, list_models(), default_model_folder())
>>> logic.process(**run.process_arguments(), waitForCompletion=False)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from DeepDenoiseLib.core.progress import warning_sentences
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.denoise.config import METHOD_NAMES, DenoiseConfig
from DeepDenoiseLib.denoise.method_rules import SERIES_DEFAULT_METHOD, VOLUME_DEFAULT_METHOD, check_uncertainty_request
from DeepDenoiseLib.denoise.model_folder import ModelInfo, check_model_name, is_model_name
from DeepDenoiseLib.denoise.model_record import MODEL_EXTENSION
from DeepDenoiseLib.slicer.sequences import sequence_of_proxy
from DeepDenoiseLib.slicer.settings import PANEL_METHOD, PANEL_METHODS_2D_ONLY, PANEL_METHODS_USING, PANEL_PAIRED_METHODS, PanelSettings

#: Where the network comes from: trained on the input, or a saved model applied as it is.
MODEL_SOURCES = {"Train on the input": "train", "Apply a saved model": "apply"}
TRAIN_ON_INPUT, APPLY_SAVED_MODEL = MODEL_SOURCES
#: Settings that only shape training; a saved model brings its own, so they are locked while one is applied.
TRAINING_SETTINGS = (
    "method", "dimensions", "modality", "budgetMinutes", "patchSize", "batchSize", "learningRate",
    "maskedFraction", "seed", "saveModel", "saveModelName", "architecture", "adversarialWeight",
)  # fmt: skip
#: The volumes a paired method learns from besides the input, shown only when the method needs them.
PAIR_VOLUMES = ("secondVolume", "trainingNoisyVolume", "trainingCleanVolume")
#: The panel's names of the two paired methods.
NOISE2NOISE, SUPERVISED = PANEL_METHOD["noise2noise"], PANEL_METHOD["supervised"]
#: The panel's names of the default method for one volume and for a sequence (MP-PCA, no network).
VOLUME_DEFAULT, SERIES_DEFAULT = PANEL_METHOD[VOLUME_DEFAULT_METHOD], PANEL_METHOD[SERIES_DEFAULT_METHOD]
#: The nodes a run on one volume fills; a sequence's results go to new sequences instead.
OUTPUT_NODES = ("outputVolume", "residualVolume", "uncertaintyVolume")


# --- Saved models ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the panel's saved-model list: ``name`` is what the parameter node keeps (empty
    for the placeholder of an empty folder), ``usable`` False greys the entry out."""

    name: str
    label: str
    tooltip: str
    usable: bool


def model_choices(models: Sequence[ModelInfo], folder: Optional[Path] = None) -> list[ModelChoice]:
    """The saved models as the panel lists them: name, method, noise model and what each was trained
    on; files that cannot be used say why (in the tooltip) and cannot be chosen. An empty folder
    gives one unusable placeholder saying how to fill it."""
    if not models:
        where = f" in {folder}" if folder is not None else ""
        return [
            ModelChoice(
                name="",
                label="No saved models yet",
                tooltip=f"No models{where}. Train on a volume with 'Save the trained model as' ticked to keep one.",
                usable=False,
            )
        ]
    choices = []
    for info in models:
        if info.problem:
            choices.append(ModelChoice(info.name, f"{info.name} (cannot be used)", f"{info.path}\n{info.problem}", False))
            continue
        method = PANEL_METHOD.get(info.method, info.method)
        label = f"{info.name}: {method} {info.dimensions.upper()}, {info.noise_model} noise, trained on {info.trained_on}"
        tooltip = f"{info.path}\nSaved {info.created} by DeepDenoise {info.library_version}."
        choices.append(ModelChoice(info.name, label, tooltip, True))
    return choices


def chosen_model(choices: Sequence[ModelChoice], current: str) -> str:
    """The model the panel shows as chosen: ``current`` while it is a usable entry, else the first
    usable one, else none (empty)."""
    usable = [choice.name for choice in choices if choice.usable]
    if current in usable:
        return current
    return usable[0] if usable else ""


def suggested_model_name(input_name: str, method: str) -> str:
    """A default name for the model a run trains: the input's name and the method, made a valid
    model name (characters other than letters, digits, spaces, dots, dashes and underscores become
    underscores)."""
    text = re.sub(r"[^A-Za-z0-9._ -]+", "_", f"{input_name} {method}")
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"^[^A-Za-z0-9]+", "", text).rstrip(" .")
    if text.lower().endswith(MODEL_EXTENSION):
        text = text[: -len(MODEL_EXTENSION)].rstrip(" .")
    return text or "model"


def updated_model_name(current: str, previous_suggestion: str, suggestion: str) -> str:
    """The save-as name after the input or method changed: the new suggestion unless the user typed
    a name of their own."""
    return suggestion if not current.strip() or current == previous_suggestion else current


# --- Sequences -------------------------------------------------------------------------------------


def sequence_option_text(sequence: Any) -> str:
    """The label of the panel's "whole sequence" checkbox for ``sequence``."""
    count = sequence.GetNumberOfDataNodes()
    frames = "1 frame" if count == 1 else f"{count} frames"
    return f"Denoise every frame of '{sequence.GetName()}' ({frames}, together)"


def sequence_to_run(state: Any) -> Optional[Any]:
    """The sequence a run takes instead of its input volume: the one whose current frame the input
    shows, when the panel's "whole sequence" checkbox is ticked; else None."""
    if not state.denoiseSequence or state.inputVolume is None:
        return None
    return sequence_of_proxy(state.inputVolume)


# --- Controls --------------------------------------------------------------------------------------


def applies_saved_model(state: Any) -> bool:
    return MODEL_SOURCES[state.modelSource] == "apply"


def trains_paired(state: Any) -> bool:
    """Whether the run trains a method that learns from pairs of volumes (and so keeps no model)."""
    return not applies_saved_model(state) and state.method in PANEL_PAIRED_METHODS


def parameters_for_method(method: str) -> dict[str, Any]:
    """What choosing ``method`` in the panel sets with it: the method's own learning rate (R2R
    fine-tunes its prior more gently than the others learn from scratch); 2D for a 2D-only method;
    no model saving for a paired method, which keeps none."""
    updates: dict[str, Any] = {}
    if method in METHOD_NAMES:
        updates["learningRate"] = DenoiseConfig.for_method(METHOD_NAMES[method]).training.learning_rate
    if method in PANEL_METHODS_2D_ONLY:
        updates["dimensions"] = "2D"
    if method in PANEL_PAIRED_METHODS or method == SERIES_DEFAULT:
        updates["saveModel"] = False
    if method == SERIES_DEFAULT:
        updates["testTimeAugmentation"] = False
    return updates


def visible_settings(state: Any) -> dict[str, bool]:
    """Which of the paired methods' volume selectors the panel shows: the second acquisition for
    Noise2Noise on a volume (on a sequence, neighbouring frames are the pairs), the training pair
    for Supervised."""
    training = not applies_saved_model(state)
    supervised = training and state.method == SUPERVISED
    return {
        "secondVolume": training and state.method == NOISE2NOISE and sequence_to_run(state) is None,
        "trainingNoisyVolume": supervised,
        "trainingCleanVolume": supervised,
    }


def enabled_settings(state: Any) -> dict[str, bool]:
    """Which settings (by parameter name, plus ``savedModel``, the saved-model list) the panel leaves
    editable for the current choices. Locks hold only while their reason does (2D for a 2D-only
    method, test-time augmentation for an uncertainty output), so a scene saved otherwise can still
    be mended."""
    training = not applies_saved_model(state)
    on_sequence = sequence_to_run(state) is not None
    enabled = {name: training for name in TRAINING_SETTINGS}
    enabled["dimensions"] = training and not (state.method in PANEL_METHODS_2D_ONLY and state.dimensions == "2D")
    for name, methods in PANEL_METHODS_USING.items():  # the masked fraction, the architecture, the adversarial weight
        enabled[name] = training and state.method in methods
    # Paired methods and MP-PCA keep no model: saving stays editable only while ticked, so it can be unticked.
    paired = trains_paired(state) or state.method == SERIES_DEFAULT
    enabled["saveModel"] = training and (not paired or bool(state.saveModel))
    enabled["saveModelName"] = training and bool(state.saveModel) and not paired
    enabled["savedModel"] = not training
    enabled["testTimeAugmentation"] = not (state.computeUncertainty and state.testTimeAugmentation)
    enabled["outputVolume"] = not on_sequence
    enabled["residualVolume"] = bool(state.computeResidual) and not on_sequence
    enabled["uncertaintyVolume"] = bool(state.computeUncertainty) and not on_sequence
    return enabled


def apply_tooltip(state: Any) -> str:
    """What Apply will do, or what it needs first."""
    if state.inputVolume is None:
        return "Select an input volume"
    sequence = sequence_to_run(state)
    what = f"every frame of '{sequence.GetName()}'" if sequence is not None else "the input volume"
    if applies_saved_model(state):
        return f"Denoise {what} with the saved model, in the background"
    if state.method == SUPERVISED:
        return f"Train on the training pair, then denoise {what} in the background"
    if state.method == NOISE2NOISE:
        pairs = "neighbouring frames" if sequence is not None else "the input and the second acquisition"
        return f"Train Noise2Noise on {pairs}, then denoise {what} in the background"
    return f"Train on {what} and denoise it in the background"


# --- The run Apply starts --------------------------------------------------------------------------


@dataclass
class PanelRun:
    """What Apply hands to ``DeepDenoiseLogic.process`` (see :meth:`process_arguments`)."""

    input_node: Any
    parameters: PanelSettings
    output_node: Optional[Any] = None
    residual_node: Optional[Any] = None
    compute_residual: bool = False
    uncertainty_node: Optional[Any] = None
    compute_uncertainty: bool = False
    model_path: Optional[Path] = None
    second_node: Optional[Any] = None
    training_noisy_node: Optional[Any] = None
    training_clean_node: Optional[Any] = None
    #: A model name (kept in the per-user folder) or a path ending in .safetensors.
    save_model_path: Optional[str] = None
    #: The saved model file that saving will replace, if one of that name exists.
    replaces_model: Optional[Path] = None

    @property
    def on_sequence(self) -> bool:
        return self.input_node.IsA("vtkMRMLSequenceNode")

    def process_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``DeepDenoiseLogic.process``."""
        return {
            "inputVolume": self.input_node,
            "outputVolume": self.output_node,
            "parameters": self.parameters,
            "residualVolume": self.residual_node,
            "computeResidual": self.compute_residual,
            "uncertaintyVolume": self.uncertainty_node,
            "computeUncertainty": self.compute_uncertainty,
            "modelPath": self.model_path,
            "saveModelPath": self.save_model_path,
            "secondVolume": self.second_node,
            "trainingNoisyVolume": self.training_noisy_node,
            "trainingCleanVolume": self.training_clean_node,
        }


def plan_run(state: Any, models: Sequence[ModelInfo] = (), model_folder: Optional[Path] = None) -> PanelRun:
    """The run for the panel's ``state``, with ``models`` the saved models listed in ``model_folder``.

    Raises :class:`InputError` with what to do for an input that cannot be denoised as chosen (a
    sequence frame without the whole-sequence option, no saved model chosen or an unusable one, a
    bad model name, a paired method without its volumes or asked to save its model), and
    ``ValueError`` for settings that do not go together. Output nodes are passed only when asked
    for, and not at all for a sequence, whose results are new sequences. When a saved model is
    applied, only the device and test-time augmentation settings matter. The paired methods' volumes
    are passed only for the method that uses them (Noise2Noise on a sequence pairs its frames).
    """
    node = state.inputVolume
    if node is None:
        raise InputError("Select an input volume.")
    sequence = sequence_to_run(state)
    if sequence is None:
        frame_of = sequence_of_proxy(node)
        if frame_of is not None:
            raise InputError(
                f"'{node.GetName()}' is the current frame of the sequence '{frame_of.GetName()}'. Tick "
                f"'Denoise every frame of '{frame_of.GetName()}'' to denoise all its frames with one model, "
                "or clone the frame (right-click > Clone in the Data module) to denoise it alone."
            )
        if state.method == SERIES_DEFAULT:
            raise InputError(
                f"{SERIES_DEFAULT} denoises a whole sequence: choose a frame of one and tick 'Denoise every frame', or another method."
            )
    compute_uncertainty = bool(state.computeUncertainty)
    run = PanelRun(
        input_node=sequence if sequence is not None else node,
        parameters=_settings(state),
        compute_residual=bool(state.computeResidual),
        compute_uncertainty=compute_uncertainty,
    )
    if sequence is None:
        run.output_node = state.outputVolume
        run.residual_node = state.residualVolume if run.compute_residual else None
        run.uncertainty_node = state.uncertaintyVolume if compute_uncertainty else None
    if applies_saved_model(state):
        run.model_path = _saved_model_path(state.savedModel, models, model_folder)
    elif trains_paired(state) or state.method == SERIES_DEFAULT:
        _add_pair_volumes(run, state)
    elif state.saveModel:
        run.save_model_path, run.replaces_model = _save_destination(state.saveModelName, model_folder)
    check_uncertainty_request(run.compute_uncertainty, run.parameters.test_time_augmentation, "Advanced", "untick the uncertainty output")
    return run


def _add_pair_volumes(run: PanelRun, state: Any) -> None:
    if state.saveModel:
        raise InputError(f"{state.method} keeps no model: untick 'Save the trained model as'.")
    visible = visible_settings(state)
    if visible["secondVolume"]:
        if state.secondVolume is None:
            raise InputError(
                "Noise2Noise learns from two acquisitions of the same anatomy: choose the second acquisition "
                "(a repeat scan on the same grid)."
            )
        run.second_node = state.secondVolume
    if visible["trainingNoisyVolume"]:
        if state.trainingNoisyVolume is None or state.trainingCleanVolume is None:
            raise InputError(
                "Supervised training learns from a noisy volume and its clean partner (e.g. low-dose and "
                "full-dose CT): choose both training volumes."
            )
        run.training_noisy_node = state.trainingNoisyVolume
        run.training_clean_node = state.trainingCleanVolume


def _settings(state: Any) -> PanelSettings:
    if applies_saved_model(state):
        return PanelSettings(device=state.device, test_time_augmentation=bool(state.testTimeAugmentation))
    return PanelSettings.from_parameter_node(state)


def _saved_model_path(name: str, models: Sequence[ModelInfo], folder: Optional[Path]) -> Path:
    where = f" in {folder}" if folder is not None else ""
    if not name:
        if not models:
            raise InputError(
                f"There are no saved models{where} yet: train on a volume with 'Save the trained model as' "
                "ticked, or choose 'Train on the input'."
            )
        raise InputError("Choose the saved model to apply.")
    info = next((info for info in models if info.name == name), None)
    if info is None:
        raise InputError(f"The saved model '{name}' is no longer{where}; press Refresh and choose another.")
    if info.problem:
        raise InputError(f"The saved model '{name}' cannot be used: {info.problem}")
    return info.path


def _save_destination(name: str, folder: Optional[Path]) -> tuple[str, Optional[Path]]:
    """The save-as name or path as the worker takes it, and the existing file it would replace."""
    name = name.strip()
    if not name:
        raise InputError("Give a name for the model to save, or untick 'Save the trained model as'.")
    if is_model_name(name):
        check_model_name(name)
        path = None if folder is None else Path(folder) / f"{name}{MODEL_EXTENSION}"
    else:
        path = Path(name).expanduser()
    return name, path if path is not None and path.is_file() else None


# --- After a run -----------------------------------------------------------------------------------


def parameters_after_run(run: PanelRun, result: Any) -> dict[str, Any]:
    """The parameter-node values to set once ``run`` succeeded: the output nodes it filled or created
    (none for a sequence, whose results are sequences that the volume selectors cannot hold), and
    the model it saved in the per-user folder as the one to apply next."""
    updates: dict[str, Any] = {}
    if not run.on_sequence:
        nodes = (result.output_node, result.residual_node, result.uncertainty_node)
        updates.update({name: node for name, node in zip(OUTPUT_NODES, nodes) if node is not None})
    if run.save_model_path is not None and is_model_name(run.save_model_path):
        updates["savedModel"] = run.save_model_path
    return updates


def summary_text(summary: Mapping[str, Any]) -> str:
    """One line for the panel's status from a run's summary."""
    parts = []
    if "seconds" in summary:
        parts.append(f"Done in {summary['seconds']:.0f} s.")
    if "frames" in summary:
        parts.append(f"{summary['frames']} frames, " + ("MP-PCA." if summary.get("method") == "mppca" else "one model."))
    if summary.get("stopped_by") == "min_steps":
        parts.append(f"The time budget was stretched to train the minimum of {summary.get('training_steps')} steps.")
    before, after = summary.get("noise_sigma_before"), summary.get("noise_sigma_after")
    if before is not None and after is not None:
        parts.append(f"Estimated noise {before:.4g} -> {after:.4g}.")
    if "noise_model" in summary:
        parts.append(f"Noise model: {summary['noise_model']}.")
    if correlation := summary.get("noise_parameters", {}).get("neighbour_correlation_kji"):
        sigma = summary["noise_sigma_fused"]
        parts.append(f"Noise correlated between neighbouring voxels (up to {max(correlation):.2f}), sigma {sigma:.4g}.")
    if "saved_model" in summary:
        parts.append(f"Model saved to {summary['saved_model']}.")
    parts += warning_sentences(summary)
    return " ".join(parts) or "Done."
