"""Run by test_slicer_module_startup.py in a Python of its own. It hides packages from the import
system, as if they were not installed (every attempt to import or find one is recorded), then either

- ``libraries MODULE...``: imports those DeepDenoiseLib modules, or
- ``module``: loads DeepDenoise.py over the slicer-core wheel and slicer_stand_ins.py and does what
  Slicer does when it starts and when the panel lists its models: creates the module's class, calls
  its startupCompleted callbacks (the sample registration, with the newest Sample Data module), and
  lists the saved models through the Logic;

and prints one JSON object: the hidden packages something tried to import, those in sys.modules, the
DeepDenoiseLib modules loaded, the import errors, and (``module``) what the module registered and
what it reports missing for the worker.

usage (from the repository root): python -m Testing.support.slicer_startup_probe HIDDEN[,HIDDEN...] libraries MODULE...
       python -m Testing.support.slicer_startup_probe HIDDEN[,HIDDEN...] module
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

SUPPORT = Path(__file__).resolve().parent
HIDDEN = set(sys.argv[1].split(","))
attempts: list[str] = []


class Hiding:
    """Wraps a finder of sys.meta_path: hidden top-level packages, and their distributions'
    metadata, are never found."""

    def __init__(self, finder) -> None:
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            attempts.append(name)
            return None
        find_spec = getattr(self.finder, "find_spec", None)
        return find_spec(name, path, target) if find_spec else None

    def find_distributions(self, *args, **kwargs):
        find_distributions = getattr(self.finder, "find_distributions", None)
        for distribution in find_distributions(*args, **kwargs) if find_distributions else ():
            if distribution.metadata["Name"] not in HIDDEN:
                yield distribution

    def invalidate_caches(self) -> None:
        if hasattr(self.finder, "invalidate_caches"):
            self.finder.invalidate_caches()


sys.meta_path[:] = [Hiding(finder) for finder in sys.meta_path]
report: dict = {"errors": {}}

if sys.argv[2] == "libraries":
    import importlib

    for name in sys.argv[3:]:
        try:
            importlib.import_module(name)
        except ImportError as error:
            report["errors"][name] = f"{type(error).__name__}: {error}"
else:
    from Testing.support import slicer_stand_ins
    from Testing.support.slicer_scene import headless_scene

    headless_scene()
    with tempfile.TemporaryDirectory() as folder:
        app = slicer_stand_ins.install(None, folder)
        api = json.loads((SUPPORT / "slicer_api_by_version.json").read_text(encoding="utf-8"))["versions"]
        newest = api[max(api, key=lambda version: tuple(int(part) for part in version.split(".")))]
        sample_data, registered = slicer_stand_ins.stand_in_sample_data(
            newest["register_custom_sample_data_source"], newest["register_custom_sample_data_category"]
        )
        sys.modules["SampleData"] = sample_data
        module = slicer_stand_ins.load_module()
        module.DeepDenoise(SimpleNamespace())
        for _signal, slot in app.connections:
            slot()
        report["models"] = module.DeepDenoiseLogic().savedModels(folder)
        report["registered"] = [entry.get("sampleName") or entry["category"] for entry in registered]
    report["start_up_attempts"] = list(attempts)
    report["missing_for_the_worker"] = module.slicer_support.missing_worker_packages(module.REQUIREMENTS_PATH)

report["attempts"] = attempts
report["hidden_loaded"] = sorted(name for name in sys.modules if name.partition(".")[0] in HIDDEN)
report["library_modules"] = sorted(name for name in sys.modules if name.partition(".")[0] == "DeepDenoiseLib")
print(json.dumps(report, default=str))
