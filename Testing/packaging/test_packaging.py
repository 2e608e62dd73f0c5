"""Packaging checks for the Slicer extension: every DeepDenoiseLib file and every module resource is
installed by the CMake files, the extension metadata is complete and agrees with the ExtensionsIndex
entry, and the files the Extensions Index checks (icon, licence, line endings) are in order."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "DeepDenoise"
TOP_CMAKE = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
MODULE_CMAKE = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
# The extension catalogue's schema (Slicer/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json).
CATALOG_KEYS = {
    "$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
    "dicom_support_rule", "build_subdirectory", "enabled", "tier",
}  # fmt: skip
# Imported by the library but provided by Slicer, by the PyTorch extension, or only needed outside Slicer.
NOT_PIP_INSTALLED_IN_SLICER = {"numpy", "SimpleITK", "torch", "slicer", "vtk", "qt", "psutil", "matplotlib", "PyTorchUtils"}
# Cohorts (deepdenoise batch, DeepDenoiseLib/cohort) need Dask; the panel does not run them, so the
# worker's requirements do not install it (batch_denoise in Slicer's console: pip_install it first).
NOT_PIP_INSTALLED_IN_SLICER |= {"dask", "distributed"}
# Sheared NIfTI grids (core/sheared_nifti.py) are read with nibabel; Slicer cannot load such files, so the
# panel never hands one to the worker (in Slicer's console: pip_install it first; the error says so).
NOT_PIP_INSTALLED_IN_SLICER |= {"nibabel"}


def cmake_commands(text: str, name: str) -> list[list[str]]:
    """The arguments of every ``name(...)`` call in a CMake file (comments dropped, quotes removed)."""
    tokens = [token for token in re.findall(r'"(?:[^"\\]|\\.)*"|#[^\n]*|\(|\)|[^\s()"#]+', text) if not token.startswith("#")]
    calls = []
    for index, token in enumerate(tokens[:-1]):
        if token.lower() == name.lower() and tokens[index + 1] == "(":
            end = tokens.index(")", index + 2)
            calls.append([argument.strip('"') for argument in tokens[index + 2 : end]])
    return calls


def cmake_set(text: str, variable: str) -> list[str]:
    for arguments in cmake_commands(text, "set"):
        if arguments and arguments[0] == variable:
            return arguments[1:]
    raise AssertionError(f"{variable} is not set")


def shipped_files(folder: Path) -> list[Path]:
    """The files under ``folder`` that git tracks or would track (not ignored), relative to the repo."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", str(folder.relative_to(REPO))],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return sorted(Path(line) for line in listing.stdout.splitlines() if (REPO / line).is_file())


def glob_recurse(pattern: str) -> set[Path]:
    """CMake's ``file(GLOB_RECURSE ... ${CMAKE_CURRENT_SOURCE_DIR}/<dir>/<name pattern>)``."""
    relative = pattern.replace("${CMAKE_CURRENT_SOURCE_DIR}/", "")
    folder, name_pattern = relative.rsplit("/", 1)
    return {path.relative_to(REPO) for path in (REPO / folder).rglob(name_pattern) if path.is_file()}


def test_extension_metadata_is_complete():
    assert cmake_commands(TOP_CMAKE, "project") == [["DeepDenoise"]]
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION"):
        assert " ".join(cmake_set(TOP_CMAKE, variable)).strip(), variable
    assert cmake_set(TOP_CMAKE, "EXTENSION_DEPENDS") == ["PyTorch"]
    assert cmake_set(TOP_CMAKE, "EXTENSION_ICONURL")[0].endswith("/DeepDenoise.png")
    assert re.match(r"https://\S+\.png$", cmake_set(TOP_CMAKE, "EXTENSION_SCREENSHOTURLS")[0])
    assert ["DeepDenoise"] in cmake_commands(TOP_CMAKE, "add_subdirectory")
    assert ["${Slicer_EXTENSION_GENERATE_CONFIG}"] in cmake_commands(TOP_CMAKE, "include")
    assert ["${Slicer_EXTENSION_CPACK}"] in cmake_commands(TOP_CMAKE, "include")


def test_module_cmake_builds_the_scripted_module_with_its_tests():
    (build,) = cmake_commands(MODULE_CMAKE, "slicerMacroBuildScriptedModule")
    assert build[:2] == ["NAME", "${MODULE_NAME}"] and "WITH_GENERIC_TESTS" in build
    assert cmake_set(MODULE_CMAKE, "MODULE_NAME") == ["DeepDenoise"]
    assert ["SCRIPT", "${MODULE_NAME}.py"] in cmake_commands(MODULE_CMAKE, "slicer_add_python_unittest")


def test_every_module_file_is_listed_and_every_listed_file_exists():
    def expand(entries: list[str]) -> set[Path]:
        return {Path("DeepDenoise") / entry.replace("${MODULE_NAME}", "DeepDenoise") for entry in entries}

    scripts = expand(cmake_set(MODULE_CMAKE, "MODULE_PYTHON_SCRIPTS"))
    resources = expand(cmake_set(MODULE_CMAKE, "MODULE_PYTHON_RESOURCES"))
    on_disk = set(shipped_files(MODULE)) - {Path("DeepDenoise/CMakeLists.txt")}
    assert scripts == {p for p in on_disk if p.suffix == ".py"}
    assert resources == {p for p in on_disk if p.suffix != ".py"}, "list every file under DeepDenoise/Resources"
    assert Path("DeepDenoise/Resources/UI/DeepDenoise.ui") in resources
    assert Path("DeepDenoise/Resources/Icons/DeepDenoise.png") in resources


def test_every_library_file_is_installed_beside_the_module():
    globs = {arguments[1]: arguments for arguments in cmake_commands(TOP_CMAKE, "file") if arguments[0] == "GLOB_RECURSE"}
    (install,) = cmake_commands(TOP_CMAKE, "ctkMacroCompilePythonScript")
    options = dict(zip(install[::2], install[1::2]))
    assert options["TARGET_NAME"] == "DeepDenoiseLib"
    # The same folders slicerMacroBuildScriptedModule puts DeepDenoise.py in, build tree and package.
    assert options["DESTINATION_DIR"] == "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}"
    assert options["INSTALL_DIR"] == "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}"
    assert "NO_INSTALL_SUBDIR" in install

    def files_of(option: str) -> set[Path]:
        variable = re.fullmatch(r"\$\{(\w+)\}", options[option]).group(1)
        arguments = globs[variable]
        assert "RELATIVE" in arguments and "CONFIGURE_DEPENDS" in arguments
        patterns = [a for a in arguments if a.startswith("${CMAKE_CURRENT_SOURCE_DIR}/")]
        return set().union(*(glob_recurse(p) for p in patterns))

    scripts, resources = files_of("SCRIPTS"), files_of("RESOURCES")
    assert all(path.suffix == ".py" for path in scripts)
    library = shipped_files(REPO / "DeepDenoiseLib")
    assert Path("DeepDenoiseLib/__init__.py") in library and Path("DeepDenoiseLib/slicer/nodes.py") in library
    missing = [str(path) for path in library if path not in scripts | resources]
    assert missing == [], f"not installed into the Slicer package: {missing}"


def test_catalog_entry_matches_the_cmake_metadata():
    (project,) = cmake_commands(TOP_CMAKE, "project")
    entry = json.loads((REPO / f"{project[0]}.json").read_text(encoding="utf-8"))  # named after project()
    assert set(entry) <= CATALOG_KEYS
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert entry["build_dependencies"] == cmake_set(TOP_CMAKE, "EXTENSION_DEPENDS")
    assert entry["category"] == cmake_set(TOP_CMAKE, "EXTENSION_CATEGORY")[0]
    repository = entry["scm_url"].removesuffix(".git")
    assert cmake_set(TOP_CMAKE, "EXTENSION_HOMEPAGE")[0].startswith(repository)
    assert repository.rsplit("/", 1)[1].startswith("Slicer") and not project[0].startswith("Slicer")
    assert 1 <= entry["tier"] <= 5


def test_the_repository_address_is_one_edit_per_file():
    """The repository address is a placeholder until the repository is published: it sits in one
    place per file (the CMake file needs it three times, as the Extensions Index checker reads each
    URL literally), and every URL agrees with the catalog entry's scm_url."""
    (project,) = cmake_commands(TOP_CMAKE, "project")
    entry = json.loads((REPO / f"{project[0]}.json").read_text(encoding="utf-8"))
    slug = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?", entry["scm_url"]).group(1)
    module_source = (MODULE / "DeepDenoise.py").read_text(encoding="utf-8")
    docs = (REPO / "README.md").read_text(encoding="utf-8")
    for text in (json.dumps(entry), module_source, docs):
        assert text.count(slug) == 1
    assert TOP_CMAKE.count(slug) == 3
    assert f'HOMEPAGE = "https://github.com/{slug}"' in module_source
    assert f"git clone https://github.com/{slug}.git" in docs
    assert cmake_set(TOP_CMAKE, "EXTENSION_HOMEPAGE")[0] == f"https://github.com/{slug}#readme"
    for variable in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        for url in cmake_set(TOP_CMAKE, variable):
            assert url.startswith(f"https://raw.githubusercontent.com/{slug}/main/"), url


def test_metadata_images_exist_or_the_docs_say_they_are_still_to_be_taken():
    icon = cmake_set(TOP_CMAKE, "EXTENSION_ICONURL")[0].split("/main/", 1)[1]
    assert (REPO / icon).is_file(), f"the icon URL names {icon}, which the repository lacks"
    docs = (REPO / "README.md").read_text(encoding="utf-8")
    for url in cmake_set(TOP_CMAKE, "EXTENSION_SCREENSHOTURLS"):
        path = url.split("/main/", 1)[1]
        if not (REPO / path).is_file():
            assert re.search(rf"`{re.escape(path)}`[^.]*still to be taken", docs), (
                f"{path} does not exist: README.md must say that the screenshot is still to be taken"
            )


def test_icon_licence_and_line_endings():
    image = pytest.importorskip("PIL.Image")
    with image.open(REPO / "DeepDenoise.png") as icon:
        assert icon.size == (128, 128) and icon.format == "PNG"
    licence = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    assert licence.startswith("Copyright 2026 The DeepDenoise contributors")
    for path in [REPO / "CMakeLists.txt", REPO / "DeepDenoise.json", REPO / "LICENSE", *shipped_files(MODULE)]:
        path = REPO / path
        if path.suffix != ".png":
            assert b"\r\n" not in path.read_bytes(), f"{path} has CRLF line endings"


def test_requirements_cover_what_the_library_imports_and_nothing_slicer_ships():
    requirements = [
        re.match(r"[A-Za-z0-9._-]+", line).group(0)
        for line in (MODULE / "Resources" / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not set(requirements) & {"numpy", "SimpleITK", "torch"}, "never pip over Slicer's own packages"
    imported = set()
    for path in (REPO / "DeepDenoiseLib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    import sys

    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "DeepDenoiseLib"}
    assert third_party - NOT_PIP_INSTALLED_IN_SLICER <= set(requirements)
