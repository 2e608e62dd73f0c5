"""Static checks of the Slicer module, which cannot be imported without the Qt side of Slicer: the
names DeepDenoise.py uses exist in the .ui with a fitting widget class, every parameter-node field is
bound to a widget its type can be connected to, and the panel agrees with the library's settings."""

from __future__ import annotations

import ast
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from DeepDenoiseLib import mrml_bridge
from DeepDenoiseLib.mrml_bridge import PanelSettings

MODULE_FOLDER = Path(__file__).resolve().parents[1] / "DeepDenoise"
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
    "Button": {"QPushButton"},
    "ProgressBar": {"QProgressBar"},
    "Label": {"QLabel"},
}
# The widget classes slicer.parameterNodeWrapper's GUI connectors accept for each type
# (Base/Python/slicer/parameterNodeWrapper/guiConnectors.py; they compare exact classes).
NUMBER_WIDGETS = {"QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox", "qMRMLSpinBox"}
CONNECTABLE = {
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton", "ctkCheckablePushButton"},
    "int": {"QSpinBox", "QSlider"} | NUMBER_WIDGETS,
    "float": NUMBER_WIDGETS,
    "str": {"QLineEdit", "QLabel", "QTextEdit"},
}
CHOICE_WIDGETS = {"QComboBox", "ctkComboBox"}
# Parameters that are nodes or panel-only switches rather than library settings.
NODE_AND_PANEL_FIELDS = {
    "inputVolume", "outputVolume", "residualVolume", "computeResidual", "uncertaintyVolume", "computeUncertainty",
}  # fmt: skip
CHOICE_SOURCES = {
    "method": "METHOD_NAMES",
    "dimensions": "DIMENSION_NAMES",
    "modality": "MODALITY_NOISE_MODELS",
    "device": "DEVICE_NAMES",
}


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


def parameter_fields() -> dict[str, ast.AnnAssign]:
    parameter_class = class_def("DeepDenoiseParameterNode")
    assert any(getattr(d, "id", None) == "parameterNodeWrapper" for d in parameter_class.decorator_list)
    return {
        statement.target.id: statement
        for statement in parameter_class.body
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
    }


def base_type(annotation: ast.expr) -> str:
    """``float`` for ``Annotated[float, ...]``, the class name for a node type."""
    if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", None) == "Annotated":
        return base_type(annotation.slice.elts[0])
    assert isinstance(annotation, ast.Name), ast.dump(annotation)
    return annotation.id


def validators(annotation: ast.expr) -> dict[str, ast.Call]:
    if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", None) == "Annotated":
        return {call.func.id: call for call in annotation.slice.elts[1:] if isinstance(call, ast.Call)}
    return {}


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
    # Besides Apply and progress, the widget logic enables the optional outputs and locks the
    # settings that a method or an output imposes.
    assert {
        "applyButton", "progressBar", "statusLabel", "residualSelector", "uncertaintySelector",
        "dimensionsComboBox", "testTimeAugmentationCheckBox", "maskedFractionSpinBox",
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


def test_every_parameter_is_bound_to_a_widget_its_type_connects_to():
    fields = parameter_fields()
    bindings = parameter_bindings()
    assert set(bindings) == set(fields), (
        f"fields without a widget: {sorted(set(fields) - set(bindings))}; "
        f"widgets naming no field: {sorted(set(bindings) - set(fields))}"
    )
    for name, statement in fields.items():
        widget = bindings[name]
        widget_class = widget.get("class")
        kind = base_type(statement.annotation)
        checks = validators(statement.annotation)
        if kind.startswith("vtkMRML"):
            assert widget_class == "qMRMLNodeComboBox", name
            node_types = [s.text for s in widget_property(widget, "nodeTypes").iter("string")]
            assert node_types == [kind], name
        elif widget_class in CHOICE_WIDGETS:
            assert "Choice" in checks, f"{name}: a combo box needs a Choice validator"
        else:
            assert widget_class in CONNECTABLE[kind], f"{name}: a {kind} cannot be connected to a {widget_class}"
            if kind in ("int", "float"):
                assert "WithinRange" in checks, f"{name}: give the number a WithinRange"


def test_parameter_node_mirrors_the_library_panel_settings():
    fields = parameter_fields()
    assert set(fields) - NODE_AND_PANEL_FIELDS == set(PanelSettings.parameter_names())
    for snake_name, camel_name in zip(
        [f for f in PanelSettings.__dataclass_fields__], PanelSettings.parameter_names()
    ):
        default = fields[camel_name].value
        assert isinstance(default, ast.Attribute) and default.attr == snake_name, (
            f"{camel_name} must default to _DEFAULTS.{snake_name}, the library's default"
        )
    for name, source in CHOICE_SOURCES.items():
        choice = validators(fields[name].annotation)["Choice"]
        assert ast.unparse(choice.args[0]) == f"list({source})"
        assert hasattr(mrml_bridge, source)


@pytest.mark.parametrize("name", ["budgetMinutes", "patchSize", "batchSize", "learningRate", "maskedFraction", "seed"])
def test_every_value_the_panel_allows_makes_a_valid_config(name):
    within_range = validators(parameter_fields()[name].annotation)["WithinRange"]
    for bound in within_range.args:
        value = eval(compile(ast.Expression(bound), "<bound>", "eval"), {"__builtins__": {}})
        PanelSettings.from_parameters({name: value}).to_config()


def test_choice_combo_boxes_take_their_items_from_the_parameter_node():
    # The parameter node's combo-box connector clears the box and adds the Choice values, so the
    # .ui holds no items of its own that could drift from them.
    fields = parameter_fields()
    for name, widget in parameter_bindings().items():
        if widget.get("class") in CHOICE_WIDGETS:
            assert "Choice" in validators(fields[name].annotation)
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


def widget_function(name: str):
    """A DeepDenoiseWidget method compiled on its own, with the module's names it uses."""
    function = next(f for f in class_def("DeepDenoiseWidget").body if getattr(f, "name", "") == name)
    namespace = {name: getattr(mrml_bridge, name) for name in ("METHODS_2D_ONLY", "MASKING_METHODS")}
    namespace["_"] = str
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(MODULE_PATH), "exec"), namespace)
    return namespace[name]


def fake_widget(**parameters) -> SimpleNamespace:
    """What the widget methods touch: ``self.ui`` widgets, the logic, and a parameter node."""
    names = {"applyButton", "residualSelector", "uncertaintySelector", "dimensionsComboBox",
             "testTimeAugmentationCheckBox", "maskedFractionSpinBox"}  # fmt: skip
    names |= {w.get("name") for w in ui_widgets().values() if w.get("class") == "ctkCollapsibleButton"}
    values = dict(vars(PanelSettings()), computeResidual=False, computeUncertainty=False, inputVolume=object())
    node = SimpleNamespace(**{camel: values[snake] for snake, camel in zip(values, PanelSettings.parameter_names())})
    for name in ("computeResidual", "computeUncertainty", "inputVolume"):
        setattr(node, name, values[name])
    for name, value in parameters.items():
        setattr(node, name, value)
    return SimpleNamespace(
        ui=SimpleNamespace(**{name: SimpleNamespace(enabled=None) for name in names}),
        logic=SimpleNamespace(isRunning=False),
        _parameterNode=node,
    )


def test_choosing_a_2d_only_method_sets_2d_and_locks_it_while_it_holds():
    on_method_chosen, update_gui = widget_function("onMethodChosen"), widget_function("_updateGui")
    # The user's own choice (activated), not the connector refilling the box, triggers the rule.
    assert 'self.ui.methodComboBox.connect("activated(int)", self.onMethodChosen)' in function_source("DeepDenoiseWidget", "setup")
    for method in mrml_bridge.METHOD_NAMES:
        widget = fake_widget(method=method, dimensions="3D")
        on_method_chosen(widget, 0)
        two_d_only = method in mrml_bridge.METHODS_2D_ONLY
        assert widget._parameterNode.dimensions == ("2D" if two_d_only else "3D")
        update_gui(widget)
        assert widget.ui.dimensionsComboBox.enabled is not two_d_only
        assert widget.ui.maskedFractionSpinBox.enabled is (method in mrml_bridge.MASKING_METHODS)
        PanelSettings.from_parameters({"method": method, "dimensions": widget._parameterNode.dimensions}).to_config()
    # A scene saved with a 2D-only method in 3D keeps the dimensions editable, so it can be mended.
    widget = fake_widget(method=mrml_bridge.METHODS_2D_ONLY[0], dimensions="3D")
    update_gui(widget)
    assert widget.ui.dimensionsComboBox.enabled is True


def test_asking_for_the_uncertainty_turns_test_time_augmentation_on_and_locks_it():
    on_clicked, update_gui = widget_function("onComputeUncertaintyClicked"), widget_function("_updateGui")
    assert 'self.ui.computeUncertaintyCheckBox.connect("clicked(bool)", self.onComputeUncertaintyClicked)' in (
        function_source("DeepDenoiseWidget", "setup")
    )
    widget = fake_widget(computeUncertainty=True, testTimeAugmentation=False)
    update_gui(widget)
    assert widget.ui.uncertaintySelector.enabled is True
    assert widget.ui.testTimeAugmentationCheckBox.enabled is True  # a saved scene's mismatch stays mendable
    on_clicked(widget, True)
    assert widget._parameterNode.testTimeAugmentation is True
    update_gui(widget)
    assert widget.ui.testTimeAugmentationCheckBox.enabled is False
    # Unticking leaves test-time augmentation on, and free to change again.
    widget._parameterNode.computeUncertainty = False
    on_clicked(widget, False)
    update_gui(widget)
    assert widget._parameterNode.testTimeAugmentation is True
    assert widget.ui.testTimeAugmentationCheckBox.enabled is True and widget.ui.uncertaintySelector.enabled is False


def test_apply_passes_the_optional_outputs_only_when_asked_for():
    apply = function_source("DeepDenoiseWidget", "onApplyButton")
    assert "residualVolume=parameters.residualVolume if parameters.computeResidual else None" in apply
    assert "uncertaintyVolume=parameters.uncertaintyVolume if parameters.computeUncertainty else None" in apply
    assert "computeUncertainty=parameters.computeUncertainty" in apply


def help_text() -> str:
    init = next(f for f in class_def("DeepDenoise").body if getattr(f, "name", "") == "__init__")
    for statement in ast.walk(init):
        if isinstance(statement, ast.Assign) and ast.unparse(statement.targets[0]) == "self.parent.helpText":
            call = statement.value.func.value  # _("...").format(...)
            return ast.literal_eval(call.args[0])
    raise AssertionError("no helpText")


def test_help_text_describes_every_method_and_every_noise_model():
    text = help_text()
    for name in mrml_bridge.METHOD_NAMES:
        assert f"<b>{name}</b>" in text, f"the help text does not describe {name}"
    assert text.index("<b>Blind-spot N2V</b> (default)") < text.index("<b>N2V</b>")
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
    assert titles == ["Inputs", "Method", "Budget", "Outputs", "Advanced"]


def test_module_follows_slicer_scripted_module_conventions():
    for name in ("DeepDenoise", "DeepDenoiseParameterNode", "DeepDenoiseWidget", "DeepDenoiseLogic", "DeepDenoiseTest"):
        class_def(name)
    assert 'self.parent.categories = ["Filtering.Denoising"]' in MODULE_SOURCE
    assert "HOMEPAGE" in MODULE_SOURCE and "#readme" in MODULE_SOURCE
    assert 'slicer.app.connect("startupCompleted()", registerSampleData)' in MODULE_SOURCE
    widget_setup = next(f for f in class_def("DeepDenoiseWidget").body if getattr(f, "name", "") == "setParameterNode")
    assert "connectGui(self.ui)" in ast.unparse(widget_setup)
    process = next(f for f in class_def("DeepDenoiseLogic").body if getattr(f, "name", "") == "process")
    arguments = [a.arg for a in process.args.args]
    assert arguments[:5] == ["self", "inputVolume", "outputVolume", "parameters", "waitForCompletion"]
    assert ast.literal_eval(process.args.defaults[arguments.index("waitForCompletion") - len(arguments)]) is True
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
    ensure = next(f for f in class_def("DeepDenoiseLogic").body if getattr(f, "name", "") == "ensureDependencies")
    assert {"installTorch", "pipEnsure", "pip_install", "confirmOkCancelDisplay"} <= calls([ensure])
