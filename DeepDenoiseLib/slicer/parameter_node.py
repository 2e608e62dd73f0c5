"""The module's parameter node (the panel's state, saved with the scene), declared from the settings
tables: every panel setting of :class:`~DeepDenoiseLib.slicer.settings.PanelSettings` and
:class:`~DeepDenoiseLib.slicer.settings.SuperResSettings` with its type, ``Choice`` of labels or
``WithinRange`` bounds and default, plus the nodes and the panel's own switches.

DeepDenoise.py builds its ``@parameterNodeWrapper`` class with :func:`parameter_node_class`, handing
over Slicer's ``Choice``, ``WithinRange`` and node class, so this module needs neither Qt nor Slicer:

>>> DeepDenoiseParameterNode = parameterNodeWrapper(parameter_node_class(Choice, WithinRange, vtkMRMLScalarVolumeNode))

The fields, besides the settings (camelCase; the Super-resolution section's start with ``superres``,
but the device and the seed, which both sections share):

- inputVolume: the noisy volume; secondVolume: Noise2Noise's second acquisition of the same anatomy
  on the input's grid; trainingNoisyVolume, trainingCleanVolume: Supervised's (noisy, clean) pair.
- denoiseSequence: when the input is the frame in view of a sequence, denoise the whole sequence.
- modelSource: train on the input, or apply the saved model savedModel (a name in the model folder;
  the panel fills its list from the folder, so no widget binds it).
- saveModel, saveModelName: also keep the trained model under that name (or path).
- outputVolume: where the denoised volume goes; none creates a new volume next to the input.
- computeResidual, residualVolume: also output input minus denoised (what was removed).
- computeUncertainty, uncertaintyVolume: also output the spread across test-time augmentations (needs
  testTimeAugmentation, which the panel turns on with it).
- superresInputVolume, superresTrainingVolume (the supervised mode's high-resolution volume),
  superresOutputVolume, superresComputeUncertainty, superresUncertaintyVolume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional

from DeepDenoiseLib.slicer.panel import MODEL_SOURCES, TRAIN_ON_INPUT
from DeepDenoiseLib.slicer.settings import PanelSettings, SuperResSettings

#: The volume nodes of the panel, in order: the denoising section's, then the Super-resolution section's.
NODE_PARAMETERS = (
    "inputVolume",
    "secondVolume",
    "trainingNoisyVolume",
    "trainingCleanVolume",
    "outputVolume",
    "residualVolume",
    "uncertaintyVolume",
    "superresInputVolume",
    "superresTrainingVolume",
    "superresOutputVolume",
    "superresUncertaintyVolume",
)
#: The panel's own switches and texts (not settings of a run), with their defaults.
PANEL_SWITCHES = {
    "denoiseSequence": True,
    "savedModel": "",
    "saveModel": False,
    "saveModelName": "",
    "computeResidual": False,
    "computeUncertainty": False,
    "superresComputeUncertainty": False,
}


@dataclass(frozen=True)
class ParameterField:
    """One field of the parameter node: its type (``node`` for a volume node), the ``choices`` a
    combo box offers or the ``low``/``high`` bounds of a number, and its default."""

    name: str
    kind: Any
    choices: Optional[tuple[str, ...]] = None
    low: Optional[float] = None
    high: Optional[float] = None
    default: Any = None

    @property
    def is_node(self) -> bool:
        return self.kind == "node"


def parameter_fields() -> list[ParameterField]:
    """Every field of the parameter node: the nodes, the switches, where the model comes from, then
    each panel setting (one field for a setting both sections share)."""
    fields = [ParameterField(name, "node") for name in NODE_PARAMETERS]
    fields += [ParameterField(name, type(default), default=default) for name, default in PANEL_SWITCHES.items()]
    fields.append(ParameterField("modelSource", str, tuple(MODEL_SOURCES), default=TRAIN_ON_INPUT))
    by_name: dict[str, ParameterField] = {}
    for setting in [*PanelSettings.SETTINGS, *SuperResSettings.SETTINGS]:
        choices = tuple(setting.labels) if setting.labels is not None else None
        field = ParameterField(setting.parameter, setting.kind, choices, setting.low, setting.high, setting.default)
        if by_name.setdefault(field.name, field) != field:
            raise AssertionError(f"the sections declare the shared setting {field.name} differently")
    return fields + list(by_name.values())


def parameter_node_class(choice: Callable[..., Any], within_range: Callable[..., Any], node_type: type) -> type:
    """The class that Slicer's ``parameterNodeWrapper`` turns into the module's parameter node: typed
    fields (``Annotated[str, Choice([...])]``, ``Annotated[float, WithinRange(low, high)]``, node
    types) with their defaults, built with Slicer's own ``choice``, ``within_range`` and ``node_type``."""
    annotations: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for field in parameter_fields():
        if field.is_node:
            annotations[field.name] = node_type
            continue
        if field.choices is not None:
            annotations[field.name] = Annotated[field.kind, choice(list(field.choices))]
        elif field.low is not None or field.high is not None:
            annotations[field.name] = Annotated[field.kind, within_range(field.low, field.high)]
        else:
            annotations[field.name] = field.kind
        defaults[field.name] = field.default
    namespace = {"__annotations__": annotations, "__doc__": __doc__, "__module__": __name__, **defaults}
    return type("DeepDenoiseParameterNode", (), namespace)
