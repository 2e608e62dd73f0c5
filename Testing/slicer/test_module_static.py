"""Static checks of the Slicer module, which cannot be imported without the Qt side of Slicer: the
names DeepDenoise.py uses exist in the .ui with a fitting widget class, every parameter-node field
(declared by the settings tables, DeepDenoiseLib/slicer/parameter_node.py) is bound to a widget its
type can be connected to on every Slicer version the module supports (from the minimum to the newest
recorded in slicer_api_by_version.json), and the panel agrees with the library's settings. The
widget's methods run on stand-ins for its .ui widgets."""

from __future__ import annotations

import ast
import inspect
import os
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from DeepDenoiseLib.core.progress import Cancelled
from DeepDenoiseLib.denoise.model_folder import ModelInfo
from DeepDenoiseLib.slicer import panel as panel_jobs
from DeepDenoiseLib.slicer import panel_view, superres_panel
from DeepDenoiseLib.slicer.logic import ModuleLogic
from DeepDenoiseLib.slicer.parameter_node import NODE_PARAMETERS, PANEL_SWITCHES, ParameterField, parameter_fields, parameter_node_class
from DeepDenoiseLib.slicer.settings import PANEL_MASKING_METHODS, PANEL_METHODS_2D_ONLY, PanelSettings, SuperResSettings
from DeepDenoiseLib.slicer.support import minimum_slicer_version_text
from Testing.support import REPO, slicer_api_by_version

MODULE_FOLDER = REPO / "DeepDenoise"
MODULE_PATH = MODULE_FOLDER / "DeepDenoise.py"
UI_PATH = MODULE_FOLDER / "Resources" / "UI" / "DeepDenoise.ui"

MODULE_SOURCE = MODULE_PATH.read_text(encoding="utf-8")
MODULE_TREE = ast.parse(MODULE_SOURCE)
UI_ROOT = ET.parse(UI_PATH).getroot()

# What a widget called "<something><suffix>" must be, by the naming convention of Slicer's modules.
CLASSES_BY_SUFFIX = {
    "CollapsibleButton": {"ctkCollapsibleButton"},
    "Selector": {"qMRMLNodeComboBox"},
    "ComboBox": {"QComboBox", "ctkComboBox"},
    "SpinBox": {"QSpinBox", "QDoubleSpinBox", "ctkDoubleSpinBox"},
    "CheckBox": {"QCheckBox", "ctkCheckBox"},
    "LineEdit": {"QLineEdit"},
    "Button": {"QPushButton"},
    "ProgressBar": {"QProgressBar"},
    "Label": {"QLabel"},
    "Frame": {"QFrame"},
}
# The widget classes slicer.parameterNodeWrapper's GUI connectors accept for each kind of parameter, by
# Slicer version (read from Slicer's guiConnectors.py at each release; they compare exact classes).
SLICER_API = slicer_api_by_version()
SUPPORTED_VERSIONS = sorted(
    (version for version in SLICER_API if tuple(map(int, version.split("."))) >= tuple(map(int, minimum_slicer_version_text().split(".")))),
    key=lambda version: tuple(map(int, version.split("."))),
)
CHOICE_WIDGETS = set().union(*(api["parameter_node_widgets"]["choice"] for api in SLICER_API.values()))
# Parameters no widget binds: the widget fills the saved-model list from the model folder itself.
UNBOUND_FIELDS = {"savedModel"}
FIELDS = {field.name: field for field in parameter_fields()}


def ui_widgets() -> dict[str, ET.Element]:
    widgets: dict[str, ET.Element] = {}
    for widget in UI_ROOT.iter("widget"):
        name = widget.get("name")
        assert name not in widgets, f"two widgets are called {name}"
        widgets[name] = widget
    return widgets


def widget_property(widget: ET.Element, name: str):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


def parameter_bindings() -> dict[str, ET.Element]:
    bindings: dict[str, ET.Element] = {}
    for widget in ui_widgets().values():
        prop = widget_property(widget, "SlicerParameterName")
        if prop is not None:
            parameter = prop.findtext("string")
            assert parameter not in bindings, f"{parameter} is bound to two widgets"
            bindings[parameter] = widget
    return bindings


def class_def(name: str) -> ast.ClassDef:
    for node in MODULE_TREE.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise AssertionError(f"DeepDenoise.py has no class {name}")


def module_constant(name: str):
    """The value of a module-level constant of DeepDenoise.py (a literal)."""
    for node in MODULE_TREE.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"DeepDenoise.py has no constant {name}")


def ui_names_used_by_the_module() -> set[str]:
    return {
        node.attr
        for node in ast.walk(MODULE_TREE)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }


def fitting_classes(name: str) -> set[str]:
    for suffix, classes in CLASSES_BY_SUFFIX.items():
        if name.lower().endswith(suffix.lower()):
            return classes
    raise AssertionError(f"widget name {name!r} does not say what it is (end it in {', '.join(CLASSES_BY_SUFFIX)})")


def test_every_ui_name_the_module_uses_exists_with_a_fitting_class():
    widgets = ui_widgets()
    used = ui_names_used_by_the_module()
    # Besides Apply and progress, the widget fills the saved-model list, offers the whole sequence
    # of a frame in view, and says where a sequence's results go.
    assert {
        "applyButton", "progressBar", "statusLabel", "savedModelComboBox", "refreshModelsButton",
        "openModelFolderButton", "denoiseSequenceCheckBox", "sequenceOutputsLabel",
    } <= used  # fmt: skip
    for name in sorted(used):
        assert name in widgets, f"DeepDenoise.py uses self.ui.{name}, which the .ui does not have"
        assert widgets[name].get("class") in fitting_classes(name), f"{name} is a {widgets[name].get('class')}"


def test_every_named_widget_in_the_ui_has_a_fitting_class():
    for name, widget in ui_widgets().items():
        if name == UI_ROOT.findtext("class"):
            assert widget.get("class") == "qMRMLWidget"
            continue
        assert widget.get("class") in fitting_classes(name), f"{name} is a {widget.get('class')}"


def parameter_kind(field: ParameterField) -> str:
    """The connector kind of a parameter-node field (slicer_api_by_version.json's names)."""
    if field.choices is not None:
        return "choice"
    return "node" if field.is_node else field.kind.__name__


def test_the_minimum_and_the_newest_slicer_are_both_checked():
    assert SUPPORTED_VERSIONS[0] == minimum_slicer_version_text() and len(SUPPORTED_VERSIONS) >= 2


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_bound_widget_is_one_that_slicers_parameter_node_connects(version):
    """connectGui raises for a widget class the version's connectors do not take, and then nothing is
    bound (ctkDoubleSpinBox for a float before Slicer 5.8, for instance)."""
    accepted = SLICER_API[version]["parameter_node_widgets"]
    for name, widget in parameter_bindings().items():
        kind = parameter_kind(FIELDS[name])
        assert widget.get("class") in accepted[kind], (
            f"Slicer {version} cannot connect a {kind} parameter ({name}) to a {widget.get('class')} ({widget.get('name')}); "
            f"it takes {', '.join(accepted[kind])}"
        )


def test_float_spin_boxes_show_their_range_and_default_at_their_decimals():
    """A QDoubleSpinBox rounds its minimum, maximum and value to its decimals: each bound and default of
    a float parameter must survive that rounding, and each box keeps its step and unit."""
    expected = {
        "budgetMinutes": (2, 0.5, " min"), "superresBudgetMinutes": (2, 0.5, " min"), "learningRate": (6, 0.0001, None),
        "maskedFraction": (4, 0.005, None), "adversarialWeight": (3, 0.05, None),
    }  # fmt: skip
    floats = {name: widget for name, widget in parameter_bindings().items() if parameter_kind(FIELDS[name]) == "float"}
    assert set(floats) == set(expected)
    for name, widget in floats.items():
        decimals = int(widget_property(widget, "decimals").findtext("number"))
        step = float(widget_property(widget, "singleStep").findtext("double"))
        suffix = widget_property(widget, "suffix")
        assert (decimals, step, suffix.findtext("string") if suffix is not None else None) == expected[name], name
        for value in (FIELDS[name].low, FIELDS[name].high, FIELDS[name].default):
            assert round(value, decimals) == pytest.approx(value, abs=1e-12), f"{name}: {value} shows as {round(value, decimals)}"


def test_every_parameter_is_bound_to_a_widget_its_type_connects_to():
    bindings = parameter_bindings()
    assert UNBOUND_FIELDS <= set(FIELDS)
    assert set(bindings) == set(FIELDS) - UNBOUND_FIELDS, (
        f"fields without a widget: {sorted(set(FIELDS) - UNBOUND_FIELDS - set(bindings))}; "
        f"widgets naming no field: {sorted(set(bindings) - set(FIELDS))}"
    )
    for name, field in FIELDS.items():
        if name in UNBOUND_FIELDS:
            continue
        widget = bindings[name]
        widget_class = widget.get("class")
        if field.is_node:
            assert widget_class == "qMRMLNodeComboBox", name
            node_types = [s.text for s in widget_property(widget, "nodeTypes").iter("string")]
            assert node_types == ["vtkMRMLScalarVolumeNode"], name
        elif widget_class in CHOICE_WIDGETS:
            assert field.choices is not None, f"{name}: a combo box needs a Choice validator"
        elif field.kind in (int, float):
            assert field.low is not None and field.high is not None, f"{name}: give the number a WithinRange"


def test_the_parameter_node_is_the_settings_tables_panel_settings_with_the_nodes_and_switches():
    settings = [*PanelSettings.SETTINGS, *SuperResSettings.SETTINGS]
    assert set(FIELDS) == {*NODE_PARAMETERS, *PANEL_SWITCHES, "modelSource", *(setting.parameter for setting in settings)}
    for setting in settings:
        field = FIELDS[setting.parameter]
        assert field.default == setting.default and field.kind is setting.kind, setting.parameter
        assert field.choices == (tuple(setting.labels) if setting.labels is not None else None), setting.parameter
        assert (field.low, field.high) == (setting.low, setting.high), setting.parameter
    assert PanelSettings.parameter_names() == [setting.name for setting in PanelSettings.SETTINGS]
    assert FIELDS["modelSource"].default == panel_jobs.TRAIN_ON_INPUT and panel_jobs.MODEL_SOURCES[panel_jobs.TRAIN_ON_INPUT] == "train"
    assert FIELDS["device"].choices == ("auto", "GPU", "CPU") and FIELDS["seed"].high == 2**31 - 1  # one field, shared by both sections


def test_the_parameter_node_class_carries_slicers_validators_and_the_defaults():
    """What DeepDenoise.py hands to parameterNodeWrapper: typed fields built with Slicer's own Choice,
    WithinRange and node class (stand-ins here), each with its default (nodes have none)."""
    import typing

    node_class = type("vtkMRMLScalarVolumeNode", (), {})
    built = parameter_node_class(lambda values: ("Choice", tuple(values)), lambda low, high: ("WithinRange", low, high), node_class)
    hints = typing.get_type_hints(built, include_extras=True)
    assert set(hints) == set(FIELDS)
    assert hints["inputVolume"] is node_class and not hasattr(built, "inputVolume")
    assert hints["method"].__metadata__ == (("Choice", tuple(FIELDS["method"].choices)),) and built.method == "Pretrained R2R"
    assert hints["budgetMinutes"].__metadata__ == (("WithinRange", 0.05, 1440.0),) and built.budgetMinutes == 4.0
    assert hints["saveModel"] is bool and built.saveModel is False and built.denoiseSequence is True
    assert (
        "DeepDenoiseParameterNode = parameterNodeWrapper(parameter_node_class(Choice, WithinRange, vtkMRMLScalarVolumeNode))"
        in MODULE_SOURCE
    )


@pytest.mark.parametrize("name", ["budgetMinutes", "patchSize", "batchSize", "learningRate", "maskedFraction", "seed", "adversarialWeight"])
def test_every_value_the_panel_allows_makes_a_valid_config(name):
    for value in (FIELDS[name].low, FIELDS[name].high):
        for method in FIELDS["method"].choices:
            PanelSettings.from_parameters({name: value, "method": method}).to_config()


@pytest.mark.parametrize("name", ["superresFactor", "superresBudgetMinutes", "superresSamplingSteps", "superresSamples"])
def test_every_super_resolution_value_the_panel_allows_makes_a_valid_config(name):
    setting = next(snake for snake, parameter in superres_panel.PARAMETER_OF_SETTING.items() if parameter == name)
    for value in (FIELDS[name].low, FIELDS[name].high):
        for method in FIELDS["superresMethod"].choices:
            SuperResSettings(**{setting: value, "method": method}).to_config()


def test_choice_combo_boxes_take_their_items_from_the_parameter_node():
    # The parameter node's combo-box connector clears the box and adds the Choice values, so the
    # .ui holds no items of its own that could drift from them.
    for name, widget in parameter_bindings().items():
        if widget.get("class") in CHOICE_WIDGETS:
            assert FIELDS[name].choices is not None
            assert widget.findall("item") == [], f"{widget.get('name')} lists items in the .ui"


def test_outputs_offer_residual_and_uncertainty_volumes_alike():
    outputs = next(w for w in ui_widgets().values() if w.get("name") == "outputsCollapsibleButton")
    inside = {w.get("name"): w for w in outputs.iter("widget")}
    assert {"outputSelector", "computeResidualCheckBox", "residualSelector", "computeUncertaintyCheckBox",
            "uncertaintySelector"} <= set(inside)  # fmt: skip
    for prop in ("nodeTypes", "noneEnabled", "addEnabled", "noneDisplay", "showChildNodeTypes"):
        residual, uncertainty = (ET.tostring(widget_property(inside[n], prop)) for n in ("residualSelector", "uncertaintySelector"))
        assert residual == uncertainty, prop
    assert widget_property(inside["uncertaintySelector"], "noneDisplay").findtext("string") == "Create new volume"
    assert "test-time augmentation" in widget_property(inside["computeUncertaintyCheckBox"], "toolTip").findtext("string")


def function_source(class_name: str, function_name: str) -> str:
    function = next(f for f in class_def(class_name).body if getattr(f, "name", "") == function_name)
    return ast.get_source_segment(MODULE_SOURCE, function)


WIDGET_METHODS = (
    "_updateGui", "_showSavedModel", "onSavedModelChosen", "onRefreshModels", "onMethodChosen", "onComputeUncertaintyClicked",
    "onCompleted", "_showIdle", "_showDone", "onSuperResCompleted", "_showFailure",
)  # fmt: skip


def widget_function(name: str, **names):
    """A DeepDenoiseWidget method compiled on its own, with the module's names it uses (the library's
    for real; Qt's few constants as stand-ins) and ``names``."""
    function = next(f for f in class_def("DeepDenoiseWidget").body if getattr(f, "name", "") == name)
    namespace = {name: getattr(panel_jobs, name) for name in panel_jobs.__dict__ if not name.startswith("__")}
    namespace.update({name: getattr(superres_panel, name) for name in superres_panel.__dict__ if not name.startswith("__")})
    namespace.update(panel_view=panel_view.panel_view, _=str, Cancelled=Cancelled)
    namespace.update(qt=SimpleNamespace(Qt=SimpleNamespace(ToolTipRole=3)), ITEM_FLAGS_ROLE=ITEM_FLAGS_ROLE)
    namespace.update(names)
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(MODULE_PATH), "exec"), namespace)
    return namespace[name]


ITEM_FLAGS_ROLE = "flags"


class FakeComboBox:
    """The parts of QComboBox the widget uses, keeping each item's text, data and role values."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self.currentIndex = -1
        self.enabled = None

    def clear(self) -> None:
        self.items, self.currentIndex = [], -1

    def addItem(self, text, data) -> None:
        self.items.append({"text": text, "data": data})
        self.currentIndex = max(self.currentIndex, 0)

    def setItemData(self, index, value, role) -> None:
        self.items[index][role] = value

    def itemData(self, index):
        return self.items[index]["data"]

    def findData(self, data) -> int:
        return next((index for index, item in enumerate(self.items) if item["data"] == data), -1)

    def blockSignals(self, blocked) -> bool:
        return False


def fake_node(name: str) -> SimpleNamespace:
    """A volume node outside any scene, as far as the widget asks."""
    return SimpleNamespace(GetName=lambda: name, GetScene=lambda: None)


def fake_widget(models=(), **parameters) -> SimpleNamespace:
    """The widget's own methods on stand-ins for its .ui widgets, its logic and its parameter node
    (the parameter node's fields at their declared defaults, then ``parameters``)."""
    state = {name: field.default for name, field in FIELDS.items()}
    state.update({"inputVolume": fake_node("MRHead"), **parameters})
    ui = SimpleNamespace(**{name: SimpleNamespace(enabled=None, visible=None, text="", toolTip="", value=0, format="")
                            for name in ui_widgets()})  # fmt: skip
    ui.savedModelComboBox = FakeComboBox()
    widget = SimpleNamespace(
        ui=ui,
        logic=SimpleNamespace(
            isRunning=False, savedModels=lambda: list(models), modelFolder=lambda: Path("/models"), summaryText=panel_jobs.summary_text
        ),  # fmt: skip
        _parameterNode=SimpleNamespace(**state),
        _modelChoices=[],
        _suggestedModelName="",
        _seriesRun=False,
        _run=None,
        _superresRun=None,
    )
    widget._settingWidgets = {name: getattr(ui, element.get("name")) for name, element in parameter_bindings().items()}
    widget._settingWidgets.update({name: getattr(ui, ui_name) for name, ui_name in module_constant("UNBOUND_SETTING_WIDGETS").items()})
    names = {id(getattr(ui, name)): name for name in ui_widgets()}
    widget._settingLabels = {name: getattr(ui, f"{names[id(control)]}Label", None) for name, control in widget._settingWidgets.items()}
    for name in WIDGET_METHODS:
        setattr(widget, name, types.MethodType(widget_function(name), widget))
    return widget


def test_the_widget_builds_its_setting_widgets_from_the_ui_bindings():
    setup = function_source("DeepDenoiseWidget", "setup")
    assert 'widget.property("SlicerParameterName"): widget' in setup
    assert "for name, widgetName in UNBOUND_SETTING_WIDGETS.items()" in setup
    unbound = module_constant("UNBOUND_SETTING_WIDGETS")
    assert set(unbound) == UNBOUND_FIELDS
    widgets = ui_widgets()
    for widget_name in unbound.values():
        assert widget_property(widgets[widget_name], "SlicerParameterName") is None
    # Every setting the library locks or frees has a widget.
    for state in ({}, {"modelSource": panel_jobs.APPLY_SAVED_MODEL}):
        widget = fake_widget(**state)
        assert set(panel_jobs.enabled_settings(widget._parameterNode)) <= set(widget._settingWidgets)


@pytest.mark.parametrize(
    "parameters",
    [{}, {"modelSource": panel_jobs.APPLY_SAVED_MODEL}, {"saveModel": True, "method": "N2V", "dimensions": "3D"},
     {"computeResidual": True, "computeUncertainty": True, "testTimeAugmentation": True}],
)  # fmt: skip
def test_update_gui_applies_the_librarys_enabled_settings(parameters):
    widget = fake_widget(**parameters)
    widget._updateGui()
    for name, enabled in panel_jobs.enabled_settings(widget._parameterNode).items():
        assert widget._settingWidgets[name].enabled is enabled, name
    assert widget.ui.applyButton.enabled is True and widget.ui.applyButton.text == "Apply"
    assert widget.ui.applyButton.toolTip == panel_jobs.apply_tooltip(widget._parameterNode)
    assert widget.ui.denoiseSequenceCheckBox.visible is False and widget.ui.sequenceOutputsLabel.visible is False
    widget.logic.isRunning = True
    widget._updateGui()
    assert widget.ui.applyButton.text == "Cancel" and widget.ui.modelCollapsibleButton.enabled is False


def test_each_method_shows_the_volumes_it_learns_from_with_their_labels():
    setup = function_source("DeepDenoiseWidget", "setup")
    assert 'getattr(self.ui, f"{widget.objectName}Label", None)' in setup
    widgets = ui_widgets()
    for name in panel_jobs.PAIR_VOLUMES:
        selector = parameter_bindings()[name].get("name")
        assert f"{selector}Label" in widgets, f"{selector} has no label to hide with it"
    expected = {
        "Noise2Noise": {"secondVolume"},
        "Supervised": {"trainingNoisyVolume", "trainingCleanVolume"},
        "N2V": set(),
    }
    for method, shown in expected.items():
        widget = fake_widget(method=method)
        widget._updateGui()
        for name in panel_jobs.PAIR_VOLUMES:
            visible = name in shown
            assert widget._settingWidgets[name].visible is visible and widget._settingLabels[name].visible is visible
        assert widget.ui.architectureComboBox.enabled is bool(shown)
        assert widget.ui.adversarialWeightSpinBox.enabled is (method == "Supervised")
    widget = fake_widget(method="Supervised", modelSource=panel_jobs.APPLY_SAVED_MODEL)
    widget._updateGui()
    assert widget.ui.trainingNoisyVolumeSelector.visible is False


def test_choosing_a_paired_method_unticks_saving_the_model():
    widget = fake_widget(method="Noise2Noise", saveModel=True)
    widget.onMethodChosen(0)
    assert widget._parameterNode.saveModel is False
    widget._updateGui()
    assert widget.ui.saveModelCheckBox.enabled is False and widget.ui.saveModelNameLineEdit.enabled is False


def test_choosing_a_2d_only_method_sets_2d_and_locks_it_while_it_holds():
    # The user's own choice (activated), not the connector refilling the box, triggers the rule.
    assert 'self.ui.methodComboBox.connect("activated(int)", self.onMethodChosen)' in function_source("DeepDenoiseWidget", "setup")
    for method in FIELDS["method"].choices:
        widget = fake_widget(method=method, dimensions="3D")
        widget.onMethodChosen(0)
        two_d_only = method in PANEL_METHODS_2D_ONLY
        assert widget._parameterNode.dimensions == ("2D" if two_d_only else "3D")
        widget._updateGui()
        if method == "MP-PCA (series)":  # on a plain volume the panel takes the volume default back
            assert widget._parameterNode.method == "Pretrained R2R" and widget._parameterNode.dimensions == "2D"
            continue
        assert widget.ui.dimensionsComboBox.enabled is not two_d_only
        assert widget.ui.maskedFractionSpinBox.enabled is (method in PANEL_MASKING_METHODS)
        PanelSettings.from_parameters({"method": method, "dimensions": widget._parameterNode.dimensions}).to_config()


def test_asking_for_the_uncertainty_turns_test_time_augmentation_on_and_locks_it():
    assert 'self.ui.computeUncertaintyCheckBox.connect("clicked(bool)", self.onComputeUncertaintyClicked)' in (
        function_source("DeepDenoiseWidget", "setup")
    )
    widget = fake_widget(computeUncertainty=True, testTimeAugmentation=False)
    widget._updateGui()
    assert widget.ui.uncertaintySelector.enabled is True
    assert widget.ui.testTimeAugmentationCheckBox.enabled is True  # a saved scene's mismatch stays mendable
    widget.onComputeUncertaintyClicked(True)
    assert widget._parameterNode.testTimeAugmentation is True
    widget._updateGui()
    assert widget.ui.testTimeAugmentationCheckBox.enabled is False
    # Unticking leaves test-time augmentation on, and free to change again.
    widget._parameterNode.computeUncertainty = False
    widget.onComputeUncertaintyClicked(False)
    widget._updateGui()
    assert widget._parameterNode.testTimeAugmentation is True
    assert widget.ui.testTimeAugmentationCheckBox.enabled is True and widget.ui.uncertaintySelector.enabled is False


def test_the_saved_model_list_greys_out_unusable_files_and_keeps_the_choice_in_the_parameter_node():
    setup = function_source("DeepDenoiseWidget", "setup")
    for connection in ('savedModelComboBox.connect("activated(int)", self.onSavedModelChosen)',
                       'refreshModelsButton.connect("clicked(bool)", self.onRefreshModels)',
                       'openModelFolderButton.connect("clicked(bool)", self.onOpenModelFolder)'):  # fmt: skip
        assert connection in setup
    folder = Path("/models")
    models = [
        ModelInfo("broken", folder / "broken.safetensors", problem="not a DeepDenoise model"),
        ModelInfo("brain", folder / "brain.safetensors", method="n2v", dimensions="3d", noise_model="rician", trained_on="8x8x8"),
        ModelInfo("ct", folder / "ct.safetensors", method="blindspot", dimensions="2d", noise_model="gaussian", trained_on="9x9x9"),
    ]
    widget = fake_widget(models=models)
    widget.onRefreshModels()
    combo = widget.ui.savedModelComboBox
    choices = panel_jobs.model_choices(models, folder)
    assert [item["text"] for item in combo.items] == [choice.label for choice in choices]
    assert [item["data"] for item in combo.items] == ["broken", "brain", "ct"]
    assert combo.items[0][ITEM_FLAGS_ROLE] == 0 and ITEM_FLAGS_ROLE not in combo.items[1]
    assert combo.items[0][3] == choices[0].tooltip  # the reason, as a tooltip
    # The first usable model is chosen, in the list and in the parameter node.
    assert widget._parameterNode.savedModel == "brain" and combo.currentIndex == 1
    widget.onSavedModelChosen(2)
    assert widget._parameterNode.savedModel == "ct"
    widget._updateGui()
    assert combo.currentIndex == 2
    # A model that vanished from the folder is not kept as the choice.
    widget.logic.savedModels = lambda: models[:2]
    widget.onRefreshModels()
    assert widget._parameterNode.savedModel == "brain" and combo.currentIndex == 1
    widget.logic.savedModels = lambda: []
    widget.onRefreshModels()
    assert widget._parameterNode.savedModel == "" and combo.items[0]["text"] == "No saved models yet"


def test_the_save_as_name_follows_input_and_method_until_the_user_types_one():
    widget = fake_widget(method="N2V2")
    widget._updateGui()
    assert widget._parameterNode.saveModelName == "MRHead N2V2"
    widget._parameterNode.inputVolume = fake_node("CT chest")
    widget._updateGui()
    assert widget._parameterNode.saveModelName == "CT chest N2V2"
    widget._parameterNode.saveModelName = "my model"
    widget._parameterNode.method = "N2V"
    widget._updateGui()
    assert widget._parameterNode.saveModelName == "my model"
    # A scene saved with a name keeps it.
    widget = fake_widget(saveModelName="kept")
    widget._updateGui()
    assert widget._parameterNode.saveModelName == "kept"


def test_a_frame_in_view_offers_its_whole_sequence():
    slicer_scene = pytest.importorskip("Testing.support.slicer_scene")
    from DeepDenoiseLib.slicer.sequences import add_browser

    scene = slicer_scene.headless_scene()
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "fMRI")
    for index in range(12):
        frame = slicer_scene.slicer.vtkMRMLScalarVolumeNode()
        slicer_scene.slicer.util.updateVolumeFromArray(frame, np.zeros((3, 4, 5), np.float32))
        sequence.SetDataNodeAtValue(frame, str(index))
    proxy = add_browser(scene, [sequence], "browser").GetProxyNode(sequence)
    widget = fake_widget(inputVolume=proxy)
    widget._updateGui()
    checkbox = widget.ui.denoiseSequenceCheckBox
    assert checkbox.visible is True and checkbox.text == "Denoise every frame of 'fMRI' (12 frames, together)"
    assert widget.ui.sequenceOutputsLabel.visible is True and widget.ui.outputSelector.enabled is False
    # A whole sequence takes the series default, MP-PCA, which keeps no model; a plain volume takes R2R back.
    assert widget._parameterNode.method == "MP-PCA (series)" and widget._parameterNode.saveModel is False
    assert widget._parameterNode.saveModelName == "fMRI MP-PCA _series_"
    widget._parameterNode.method = "N2V"  # chosen for the sequence: it stays
    widget._updateGui()
    assert widget._parameterNode.method == "N2V"
    widget._parameterNode.denoiseSequence = False
    widget._updateGui()
    assert widget.ui.sequenceOutputsLabel.visible is False and widget.ui.outputSelector.enabled is True
    widget._parameterNode.method = "MP-PCA (series)"
    widget._updateGui()
    assert widget._parameterNode.method == "Pretrained R2R"


def test_apply_runs_what_the_library_plans():
    apply = function_source("DeepDenoiseWidget", "onApplyButton")
    assert "run = plan_run(self._parameterNode, self.logic.savedModels(), self.logic.modelFolder())" in apply
    assert "**run.process_arguments()" in apply and "run.replaces_model" in apply
    # Every argument the plan hands over is one DeepDenoiseLogic.process (ModuleLogic's) takes.
    arguments = set(inspect.signature(ModuleLogic.process).parameters)
    keys = set(panel_jobs.PanelRun(input_node=None, parameters=PanelSettings()).process_arguments())
    assert {"inputVolume", "modelPath", "saveModelPath"} <= keys <= arguments, sorted(keys - arguments)


def test_completion_shows_the_results_and_the_saved_model():
    denoised = object()
    run = panel_jobs.PanelRun(input_node=SimpleNamespace(IsA=lambda name: False), parameters=PanelSettings(), save_model_path="brain")
    models = [ModelInfo("brain", Path("/models/brain.safetensors"), method="blindspot", dimensions="2d")]
    widget = fake_widget(models=models)
    widget._run = run
    widget.onCompleted(SimpleNamespace(output_node=denoised, residual_node=None, uncertainty_node=None,
                                       summary={"seconds": 3.0, "saved_model": "/models/brain.safetensors"}), None)  # fmt: skip
    assert widget._run is None
    assert widget._parameterNode.outputVolume is denoised and widget._parameterNode.savedModel == "brain"
    assert [item["data"] for item in widget.ui.savedModelComboBox.items] == ["brain"]  # the list was refreshed
    assert widget.ui.statusLabel.text == "Done in 3 s. Model saved to /models/brain.safetensors."
    widget._run = run
    widget.onCompleted(None, Cancelled("the run was cancelled"))
    assert widget.ui.statusLabel.text == "Cancelled; the scene was left as it was." and widget._run is None


def help_text() -> str:
    init = next(f for f in class_def("DeepDenoise").body if getattr(f, "name", "") == "__init__")
    for statement in ast.walk(init):
        if isinstance(statement, ast.Assign) and ast.unparse(statement.targets[0]) == "self.parent.helpText":
            call = statement.value.func.value  # _("...").format(...)
            return ast.literal_eval(call.args[0])
    raise AssertionError("no helpText")


def test_help_text_describes_every_method_and_every_noise_model():
    text = help_text()
    for name in FIELDS["method"].choices:
        assert f"<b>{name}</b>" in text, f"the help text does not describe {name}"
    assert text.index("<b>Pretrained R2R</b> (default)") < text.index("<b>Blind-spot N2V</b>") < text.index("<b>N2V</b>")
    for words in ("Rician for MRI", "Poisson for PET", "speckle for ultrasound", "variance-stabilising", "uncertainty"):
        assert words in text, words


def test_every_node_selector_receives_the_scene():
    root_name = UI_ROOT.findtext("class")
    connected = {
        connection.findtext("receiver")
        for connection in UI_ROOT.iter("connection")
        if connection.findtext("sender") == root_name
        and connection.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and connection.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    selectors = {name for name, widget in ui_widgets().items() if widget.get("class") == "qMRMLNodeComboBox"}
    assert selectors and selectors <= connected, f"no scene for {sorted(selectors - connected)}"


def test_panel_has_the_sections_the_issue_lists():
    titles = [
        widget_property(widget, "text").findtext("string")
        for widget in ui_widgets().values()
        if widget.get("class") == "ctkCollapsibleButton"
    ]
    assert titles == ["Inputs", "Method", "Model", "Budget", "Outputs", "Advanced", "Super-resolution"]


def test_module_follows_slicer_scripted_module_conventions():
    for name in ("DeepDenoise", "DeepDenoiseWidget", "DeepDenoiseLogic", "DeepDenoiseTest"):
        class_def(name)
    assert "DeepDenoiseParameterNode = parameterNodeWrapper(" in MODULE_SOURCE  # the fifth class, built from the settings tables
    assert [ast.unparse(base) for base in class_def("DeepDenoiseLogic").bases] == ["ScriptedLoadableModuleLogic", "ModuleLogic"]
    assert 'self.parent.categories = ["Filtering.Denoising"]' in MODULE_SOURCE
    assert "HOMEPAGE" in MODULE_SOURCE and "#readme" in MODULE_SOURCE
    assert 'slicer.app.connect("startupCompleted()", registerSampleData)' in MODULE_SOURCE
    widget_setup = next(f for f in class_def("DeepDenoiseWidget").body if getattr(f, "name", "") == "setParameterNode")
    assert "connectGui(self.ui)" in ast.unparse(widget_setup)
    process = inspect.signature(ModuleLogic.process).parameters
    assert list(process)[:5] == ["self", "inputVolume", "outputVolume", "parameters", "waitForCompletion"]
    assert process["waitForCompletion"].default is True
    test_methods = {f.name for f in class_def("DeepDenoiseTest").body if isinstance(f, ast.FunctionDef)}
    assert "runTest" in test_methods and any(m.startswith("test_") for m in test_methods)
    # Every .py in a module folder is loaded as a Slicer module: only the module itself may be there.
    assert [p.name for p in MODULE_FOLDER.glob("*.py")] == ["DeepDenoise.py"]


def library_parent_finder():
    """DeepDenoise.py's own ``_libraryParent`` function, compiled on its own."""
    function = next(f for f in MODULE_TREE.body if isinstance(f, ast.FunctionDef) and f.name == "_libraryParent")
    namespace: dict = {"os": os}
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(MODULE_PATH), "exec"), namespace)
    return namespace


def test_module_finds_the_library_installed_beside_it_and_in_a_checkout(tmp_path):
    namespace = library_parent_finder()
    # Developer mode: "Additional module paths" points at <checkout>/DeepDenoise.
    namespace["__file__"] = str(MODULE_PATH)
    assert namespace["_libraryParent"]() == str(MODULE_FOLDER.parent)
    # An installed extension: qt-scripted-modules/ holds DeepDenoise.py and DeepDenoiseLib/ side by side.
    installed = tmp_path / "lib" / "Slicer-5.8" / "qt-scripted-modules"
    (installed / "DeepDenoiseLib").mkdir(parents=True)
    (installed / "DeepDenoiseLib" / "__init__.py").write_text("")
    namespace["__file__"] = str(installed / "DeepDenoise.py")
    assert namespace["_libraryParent"]() == str(installed)
    namespace["__file__"] = str(tmp_path / "elsewhere" / "DeepDenoise.py")
    with pytest.raises(ImportError, match="DeepDenoiseLib was found neither"):
        namespace["_libraryParent"]()


def test_nothing_is_installed_at_import_time():
    installers = {"pip_install", "pip_ensure", "pipEnsure", "installTorch"}

    def calls(nodes) -> set[str]:
        names = set()
        for node in nodes:
            for call in ast.walk(node):
                if isinstance(call, ast.Call):
                    function = call.func
                    names.add(function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", ""))
        return names

    module_level = [n for n in MODULE_TREE.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    class_level = [s for c in MODULE_TREE.body if isinstance(c, ast.ClassDef) for s in c.body if not isinstance(s, ast.FunctionDef)]
    assert not calls(module_level + class_level) & installers
    confirm = next(f for f in class_def("DeepDenoiseLogic").body if getattr(f, "name", "") == "confirmInstall")
    assert calls([confirm]) >= {"confirmOkCancelDisplay"}  # the module asks; the library installs (ModuleLogic.ensureDependencies)
    library = ast.parse((REPO / "DeepDenoiseLib" / "slicer" / "logic.py").read_text(encoding="utf-8"))
    assert not calls([n for n in library.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]) & installers
    assert {"installTorch", "pip_ensure", "pip_install"} <= calls([library])


def test_the_super_resolution_section_shows_and_locks_what_its_choices_use():
    widget = fake_widget(superresInputVolume=fake_node("thick"))
    widget._updateGui()
    assert widget.ui.superresTrainingVolumeSelector.visible is False
    assert widget.ui.superresTrainingVolumeSelectorLabel.visible is False
    assert widget.ui.superresSamplesSpinBox.enabled is True and widget.ui.superresUncertaintySelector.enabled is False
    assert widget.ui.superresApplyButton.enabled is True and widget.ui.superresApplyButton.text == "Super-resolve"
    assert widget.ui.superresApplyButton.toolTip == superres_panel.superres_tooltip(widget._parameterNode)
    widget = fake_widget(superresInputVolume=fake_node("thick"), superresMode="Supervised", superresMethod="Regression",
                         superresComputeUncertainty=True, superresFactor=3)  # fmt: skip
    widget._updateGui()
    assert widget.ui.superresTrainingVolumeSelector.visible is True
    assert widget.ui.superresTrainingVolumeSelectorLabel.visible is True
    for name in ("superresSamplingStepsSpinBox", "superresSamplesSpinBox", "superresComputeUncertaintyCheckBox",
                 "superresUncertaintySelector", "superresCascadeCheckBox"):  # fmt: skip
        assert getattr(widget.ui, name).enabled is False, name
    widget = fake_widget(superresInputVolume=None)
    widget._updateGui()
    assert widget.ui.superresApplyButton.enabled is False


def test_a_running_super_resolution_turns_its_own_button_into_cancel():
    widget = fake_widget(superresInputVolume=fake_node("thick"))
    widget.logic.isRunning = True
    widget._superresRun = object()
    widget._updateGui()
    assert widget.ui.superresApplyButton.text == "Cancel" and widget.ui.superresApplyButton.enabled is True
    assert widget.ui.applyButton.text == "Apply" and widget.ui.applyButton.enabled is False
    assert widget.ui.superresSettingsFrame.enabled is False and widget.ui.inputsCollapsibleButton.enabled is False
    widget._superresRun = None
    widget._updateGui()
    assert widget.ui.applyButton.text == "Cancel" and widget.ui.superresApplyButton.enabled is False


def test_super_resolve_runs_what_the_library_plans_and_shows_the_result():
    source = function_source("DeepDenoiseWidget", "onSuperResolveButton")
    assert "run = plan_superres_run(self._parameterNode)" in source and "**run.logic_arguments()" in source
    assert "self.logic.cancel()" in function_source("DeepDenoiseWidget", "_startRun")
    arguments = set(inspect.signature(ModuleLogic.superResolve).parameters)
    keys = set(superres_panel.SuperResRun(input_node=None, settings=SuperResSettings()).logic_arguments())
    assert keys <= arguments, sorted(keys - arguments)
    fine, spread = object(), object()
    widget = fake_widget()
    widget._superresRun = superres_panel.SuperResRun(None, SuperResSettings(), compute_uncertainty=True)
    summary = {"seconds": 12.0, "input_shape_kji": [8, 24, 24], "output_shape_kji": [32, 24, 24]}
    widget.onSuperResCompleted(SimpleNamespace(output_node=fine, uncertainty_node=spread, summary=summary), None)
    assert widget._superresRun is None
    assert widget._parameterNode.superresOutputVolume is fine and widget._parameterNode.superresUncertaintyVolume is spread
    assert widget.ui.statusLabel.text == "Done in 12 s. 24x24x8 -> 24x24x32 voxels."
    widget._superresRun = superres_panel.SuperResRun(None, SuperResSettings())
    widget.onSuperResCompleted(None, Cancelled("the run was cancelled"))
    assert widget.ui.statusLabel.text == "Cancelled; the scene was left as it was." and widget._superresRun is None


def test_opening_the_panel_keeps_the_saved_model_the_scene_chose():
    """setup() runs as written, on stand-ins: it must list the model folder before it binds the
    parameter node, whose first update would otherwise find no models and drop the scene's choice."""
    folder = Path("/models")
    models = [
        ModelInfo("brain", folder / "brain.safetensors", method="n2v", dimensions="3d", noise_model="rician", trained_on="8x8x8"),
        ModelInfo("ct", folder / "ct.safetensors", method="blindspot", dimensions="2d", noise_model="gaussian", trained_on="9x9x9"),
    ]
    widget = fake_widget(models=models, modelSource=panel_jobs.APPLY_SAVED_MODEL, savedModel="ct")
    parameter_node, widget._parameterNode = widget._parameterNode, None
    parameter_node.connectGui = lambda ui: "tag"
    widget.logic.getParameterNode = lambda: parameter_node
    widget.addObserver = widget.removeObserver = lambda *args: None
    widget.resourcePath = lambda path: path
    for handler in ("onSceneStartClose", "onSceneEndClose", "onApplyButton", "onSuperResolveButton", "onOpenModelFolder"):
        setattr(widget, handler, None)  # connected, not called
    bindings = {element.get("name"): parameter for parameter, element in parameter_bindings().items()}

    def dynamic_properties(name):
        return lambda key: bindings.get(name) if key == "SlicerParameterName" else None

    for name in ui_widgets():
        control = getattr(widget.ui, name)
        control.connect, control.objectName, control.property = (lambda *args: None), name, dynamic_properties(name)
    ui_widget = SimpleNamespace(setMRMLScene=lambda scene: None, findChildren=lambda cls: list(vars(widget.ui).values()))
    widget.layout = SimpleNamespace(addWidget=lambda child: None)
    names = {
        "slicer": SimpleNamespace(
            util=SimpleNamespace(loadUI=lambda path: ui_widget, childWidgetVariables=lambda ui: widget.ui),
            mrmlScene=SimpleNamespace(StartCloseEvent=1, EndCloseEvent=2, GetFirstNodeByClass=lambda cls: None),
        ),
        "qt": SimpleNamespace(QWidget=object, Qt=SimpleNamespace(ToolTipRole=3)),
        "vtk": SimpleNamespace(vtkCommand=SimpleNamespace(ModifiedEvent=33)),
        "ScriptedLoadableModuleWidget": SimpleNamespace(setup=lambda self: None),
        "SLICER_VERSION_PROBLEM": None,
        "UNBOUND_SETTING_WIDGETS": module_constant("UNBOUND_SETTING_WIDGETS"),
        "DeepDenoiseLogic": lambda: widget.logic,
    }
    for name in ("setup", "initializeParameterNode", "setParameterNode"):
        setattr(widget, name, types.MethodType(widget_function(name, **names), widget))
    widget.setup()
    combo = widget.ui.savedModelComboBox
    assert widget._parameterNode is parameter_node and widget._parameterNodeGuiTag == "tag"
    assert parameter_node.savedModel == "ct" and combo.items[combo.currentIndex]["data"] == "ct"
