"""Small stand-ins for the Qt side of Slicer that the ``slicer-core`` wheel lacks (qt.QTimer and
QLabel, slicer.i18n.tr, the parameter-node wrapper decorator, the scripted-module base classes,
slicer.app), and a loader that imports DeepDenoise.py over them. Used by the module's tests and by
``slicer_startup_probe.py``, which imports the module with torch blocked."""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

MODULE_PATH = Path(__file__).resolve().parents[2] / "DeepDenoise" / "DeepDenoise.py"


class StandInTimer:
    """qt.QTimer as the Logic uses it; the test fires it by calling the connected slot."""

    def __init__(self) -> None:
        self.active = False
        self.slot = None

    def setInterval(self, milliseconds) -> None:
        pass

    def connect(self, signal, slot) -> None:
        self.slot = slot

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


class StandInLabel:
    def __init__(self, text: str = "") -> None:
        self.text = text
        self.wordWrap = False


class StandInLayout:
    def __init__(self) -> None:
        self.widgets: list[Any] = []

    def addWidget(self, widget) -> None:
        self.widgets.append(widget)


class StandInScriptedBase:
    """The scripted-module base classes: they keep ``parent``; the widget gets a layout, and records
    that Slicer's own Reload (which re-executes DeepDenoise.py) was asked for."""

    reloads: ClassVar[list[Any]] = []

    def __init__(self, parent=None, *args) -> None:
        self.parent = parent
        self.layout = StandInLayout()

    def setup(self) -> None:
        pass

    def onReload(self) -> None:
        StandInScriptedBase.reloads.append(self)


class StandInModuleTest(unittest.TestCase):
    """ScriptedLoadableModuleTest: a unittest.TestCase whose delayDisplay records its messages."""

    messages: ClassVar[list[str]] = []

    def delayDisplay(self, message, msec=None) -> None:
        StandInModuleTest.messages.append(message)


class StandInApp:
    """slicer.app: the version numbers, the temporary folder and the signal connections."""

    def __init__(self, temporary_path: str, version: tuple[int, int] = (5, 13)) -> None:
        self.temporaryPath = temporary_path
        self.majorVersion, self.minorVersion = version
        self.connections: list[tuple[str, Any]] = []

    def connect(self, signal: str, slot) -> None:
        self.connections.append((signal, slot))


def stand_in_modules() -> dict[str, types.ModuleType]:
    qt = types.ModuleType("qt")
    qt.QTimer = StandInTimer
    qt.QLabel = StandInLabel
    qt.Qt = SimpleNamespace(UserRole=256, ToolTipRole=3)
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = wrapper.WithinRange = lambda *args: args
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget"):
        setattr(scripted, name, type(name, (StandInScriptedBase,), {}))
    scripted.ScriptedLoadableModuleTest = StandInModuleTest
    return {"qt": qt, "slicer.i18n": i18n, "slicer.parameterNodeWrapper": wrapper, "slicer.ScriptedLoadableModule": scripted}


def load_module(path: Path = MODULE_PATH) -> types.ModuleType:
    """Execute DeepDenoise.py as the module ``DeepDenoise`` (the stand-ins must be in place)."""
    spec = importlib.util.spec_from_file_location("DeepDenoise", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stand_in_sample_data(parameters: list[str], categories: bool) -> tuple[types.ModuleType, list[dict]]:
    """A ``SampleData`` module whose ``SampleDataLogic.registerCustomSampleDataSource`` takes exactly
    ``parameters`` as keywords (a Slicer version's, from slicer_api_by_version.json), as Slicer's does,
    so an argument that version lacks raises TypeError; with ``categories``, also
    registerCustomSampleDataCategory. Returns the module and the list its calls are recorded in."""
    registered: list[dict] = []
    namespace: dict[str, Any] = {"registered": registered}
    signature = ", ".join(f"{name}=None" for name in parameters)
    exec(f"def registerCustomSampleDataSource({signature}):\n    registered.append(dict(locals()))", namespace)  # noqa: S102
    members: dict[str, Any] = {"registerCustomSampleDataSource": staticmethod(namespace["registerCustomSampleDataSource"])}
    if categories:
        members["registerCustomSampleDataCategory"] = staticmethod(
            lambda category, title: registered.append({"category": category, "title": title})
        )
    module = types.ModuleType("SampleData")
    module.SampleDataLogic = type("SampleDataLogic", (), members)
    return module, registered


def install(monkeypatch, temporary_path: str, version: tuple[int, int] = (5, 13)) -> StandInApp:
    """Put the stand-ins in ``sys.modules`` and ``slicer.app``: for the test (undone after it) with
    pytest's ``monkeypatch``, for good with None (in a Python of its own)."""
    import slicer

    app = StandInApp(temporary_path, version)
    if monkeypatch is None:
        sys.modules.update(stand_in_modules())
        slicer.app = app
        return app
    for name, stand_in in stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, stand_in)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    return app
