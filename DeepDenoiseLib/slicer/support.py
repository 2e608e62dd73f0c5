"""What the Slicer module (``DeepDenoise/DeepDenoise.py``) decides outside Qt, so that it is tested
without Slicer: whether the running Slicer is recent enough, how to register the sample with that
Slicer's Sample Data module, which packages the background worker still lacks, and how developer
mode's *Reload* renews this library.

The module imports this file while Slicer starts, before PyTorch or any package of
``DeepDenoise/Resources/requirements.txt`` may exist, and on a Slicer too old to run DeepDenoise (where
it explains why): it imports nothing outside the standard library.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import re
import sys
from collections.abc import Collection, MutableMapping
from pathlib import Path
from typing import Any

#: The oldest 3D Slicer DeepDenoise runs on, stated in README.md ("Install") and asked for by the top
#: CMakeLists.txt. Before 5.4 Slicer lacks slicer.i18n and slicer.parameterNodeWrapper; 5.6, the release
#: the README has promised, is the oldest the module was checked against in Slicer's source (its
#: parameter-node connectors, Sample Data module and Python 3.9: Testing/slicer_api_by_version.json).
MINIMUM_SLICER_VERSION = (5, 6)
SLICER_DOWNLOAD_URL = "https://download.slicer.org"

#: The bundled sample in the Sample Data module: its category, name (also the node's name) and type.
SAMPLE_CATEGORY = "DeepDenoise"
SAMPLE_NAME = "DeepDenoiseNoisyBrain"
SAMPLE_FILE_TYPE = "VolumeFile"

#: The package this file belongs to, which *Reload* forgets.
LIBRARY_PACKAGE = __name__.split(".")[0]


def minimum_slicer_version_text() -> str:
    return ".".join(str(part) for part in MINIMUM_SLICER_VERSION)


def slicer_version_problem(major: int, minor: int) -> str | None:
    """None when Slicer ``major.minor`` can run DeepDenoise, else the message to show instead."""
    if (int(major), int(minor)) >= MINIMUM_SLICER_VERSION:
        return None
    return (
        f"DeepDenoise needs 3D Slicer {minimum_slicer_version_text()} or newer; this is Slicer {major}.{minor}. "
        f"Install a current Slicer from {SLICER_DOWNLOAD_URL}, then DeepDenoise from its Extensions Manager."
    )


def slicer_module_api(problem: str | None) -> tuple:
    """``(tr, Choice, WithinRange, parameterNodeWrapper)`` for the module: Slicer's own (slicer.i18n and
    slicer.parameterNodeWrapper) when ``problem`` is None; otherwise, on a Slicer too old to run
    DeepDenoise (which may lack them), stand-ins that let the module load and show ``problem``, which
    is also logged."""
    if problem is None:
        from slicer.i18n import tr
        from slicer.parameterNodeWrapper import (
            Choice,
            WithinRange,
            parameterNodeWrapper,
        )

        return tr, Choice, WithinRange, parameterNodeWrapper
    logging.getLogger("DeepDenoise").error(problem)
    return _untranslated, _no_validator, _no_validator, _no_parameter_node_wrapper


def _untranslated(text: str) -> str:
    return text


def _no_validator(*args: Any) -> tuple:
    return args


def _no_parameter_node_wrapper(cls: type) -> type:
    return cls


def sample_file_name(sample_file: str | Path, checksum: str) -> str:
    """The name the sample is cached under in Slicer's cache folder: it changes with the sample's
    content, so a cache filled by an older DeepDenoise never serves its copy for a newer sample."""
    digest = checksum.split(":", 1)[1]
    name = Path(sample_file).name
    suffixes = name[name.index(".") :] if "." in name else ""
    return f"{SAMPLE_NAME}-{digest[:12]}{suffixes}"


def sample_source_arguments(accepted: Collection[str], sample_file: str | Path, checksum: str, thumbnail_file: str | Path) -> dict:
    """Keyword arguments for ``SampleData.SampleDataLogic.registerCustomSampleDataSource`` in a Slicer
    whose method takes the parameter names ``accepted``: the file type goes to ``loadFileTypes``
    (Slicer 5.8 and newer) or ``loadFileType`` (5.6), the checksum is ``SHA256:<hex>``."""
    arguments = {
        "category": SAMPLE_CATEGORY,
        "sampleName": SAMPLE_NAME,
        "thumbnailFileName": str(thumbnail_file),
        "uris": Path(sample_file).resolve().as_uri(),
        "fileNames": sample_file_name(sample_file, checksum),
        "nodeNames": SAMPLE_NAME,
        "checksums": checksum,
    }
    arguments["loadFileTypes" if "loadFileTypes" in accepted else "loadFileType"] = SAMPLE_FILE_TYPE
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise TypeError(f"this Slicer's Sample Data module does not take {', '.join(unknown)}")
    return arguments


def register_sample(sample_data_logic: Any, thumbnail_file: str | Path, category_title: str) -> None:
    """Offer the bundled noisy sample in the Sample Data module (``sample_data_logic`` is
    ``SampleData.SampleDataLogic``) with the arguments the running Slicer takes: a titled category
    from Slicer 5.12, the file type's parameter name of 5.6 or of 5.8 and newer."""
    from DeepDenoiseLib.core.sample_data import NOISY_CHECKSUM, sample_paths

    if hasattr(sample_data_logic, "registerCustomSampleDataCategory"):
        sample_data_logic.registerCustomSampleDataCategory(SAMPLE_CATEGORY, title=category_title)
    accepted = inspect.signature(sample_data_logic.registerCustomSampleDataSource).parameters
    arguments = sample_source_arguments(accepted, sample_paths().noisy, NOISY_CHECKSUM, thumbnail_file)
    sample_data_logic.registerCustomSampleDataSource(**arguments)


def read_requirements(path: str | Path) -> list:
    """The requirement lines of a requirements.txt (no comments, blank lines or pip options)."""
    with open(path, encoding="utf-8") as file:
        lines = [line.strip() for line in file]
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def _distribution_installed(requirement: str) -> bool:
    name = re.match(r"[A-Za-z0-9._-]+", requirement)  # the name before any version or marker
    if name is None:
        return False
    try:
        importlib.metadata.version(name.group(0))
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def missing_worker_packages(requirements_path: str | Path) -> list:
    """What the background worker needs and this Python lacks, found without importing anything:
    ``torch`` (installed through the PyTorch extension), then the lines of ``requirements_path``
    whose distribution is not installed."""
    importlib.invalidate_caches()  # see what an install has just added
    missing = [] if importlib.util.find_spec("torch") is not None else ["torch"]
    return missing + [line for line in read_requirements(requirements_path) if not _distribution_installed(line)]


def self_test_skip_reason(missing: Collection[str]) -> str | None:
    """Why the self-test's runs in the background worker are skipped, or None when they can run. A
    self-test never installs anything: PyTorch alone is gigabytes."""
    if not missing:
        return None
    names = ", ".join(missing)
    return (
        f"Skipped: the background worker needs {names}, which {'is' if len(missing) == 1 else 'are'} not "
        "installed, and a self-test installs nothing. Press Apply in the DeepDenoise panel once (it asks "
        "before installing anything), then run the self-test again."
    )


def forget_library_modules(modules: MutableMapping[str, Any] | None = None) -> list:
    """Remove this package and every one of its modules from ``modules`` (``sys.modules``) and return
    their names. Slicer's *Reload* re-executes DeepDenoise.py alone; after this, its imports read every
    library file afresh, each after the files it imports, so library edits need no restart."""
    modules = sys.modules if modules is None else modules
    names = sorted(name for name in modules if name == LIBRARY_PACKAGE or name.startswith(LIBRARY_PACKAGE + "."))
    for name in names:
        del modules[name]
    return names
