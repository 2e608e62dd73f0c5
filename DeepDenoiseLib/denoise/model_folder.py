"""The per-user folder of saved models: where it is, model names, and the list the panel shows.

Models are ``NAME.safetensors`` files (model_record.py). Names are resolved in the folder given, or
in :func:`default_model_folder`: ``$DEEPDENOISE_MODELS`` if set, else the platform's per-user data
folder. Listing reads only each file's header, so it is quick and never loads any weights.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.denoise.model_record import MODEL_EXTENSION, PathLike, model_name, read_model_record

#: The environment variable naming the per-user model folder (overrides the platform's default).
MODELS_FOLDER_VARIABLE = "DEEPDENOISE_MODELS"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")


@dataclass
class ModelInfo:
    """One model file as a list of models shows it (read from the file's header alone). A file that
    cannot be used has ``problem`` set to the reason and the other fields empty."""

    name: str
    path: Path
    method: str = ""
    dimensions: str = ""
    noise_model: str = ""
    trained_on: str = ""
    created: str = ""
    library_version: str = ""
    problem: Optional[str] = None


def default_model_folder() -> Path:
    """Where saved models live for this user: ``$DEEPDENOISE_MODELS`` if set, else the platform's
    per-user data folder (``~/.local/share/DeepDenoise/models`` or ``$XDG_DATA_HOME/DeepDenoise/models``
    on Linux, ``~/Library/Application Support/DeepDenoise/models`` on macOS,
    ``%LOCALAPPDATA%\\DeepDenoise\\models`` on Windows). It may not exist yet."""
    chosen = os.environ.get(MODELS_FOLDER_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "DeepDenoise" / "models"


def is_model_name(name_or_path: PathLike) -> bool:
    """True when ``name_or_path`` stands for a model in the model folder rather than a file path:
    it holds no folder separator and does not end in ``.safetensors``."""
    text = str(name_or_path)
    return not (os.sep in text or (os.altsep and os.altsep in text) or text.lower().endswith(MODEL_EXTENSION))


def check_model_name(name: str) -> None:
    """Raise :class:`InputError` unless ``name`` can name a model file in the model folder."""
    if not _NAME_PATTERN.match(name):
        raise InputError(
            f"'{name}' is not a valid model name: use letters, digits, spaces, dots, dashes and underscores, "
            f"starting with a letter or digit, or give a path ending in {MODEL_EXTENSION}"
        )


def resolve_model_path(name_or_path: PathLike, folder: Optional[PathLike] = None, for_writing: bool = False) -> Path:
    """A model's file: ``name_or_path`` as a path if it holds a folder separator or ends in ``.safetensors``,
    else a model NAME in the per-user ``folder`` (:func:`default_model_folder` by default), which is
    created when ``for_writing``. Reading a name that is not there raises ``FileNotFoundError``
    listing the models that are."""
    text = str(name_or_path)
    if not is_model_name(text):
        return Path(text).expanduser()
    check_model_name(text)
    folder = Path(folder).expanduser() if folder is not None else default_model_folder()
    path = folder / f"{text}{MODEL_EXTENSION}"
    if for_writing:
        folder.mkdir(parents=True, exist_ok=True)
    elif not path.is_file():
        names = [info.name for info in list_models(folder)]
        known = f"saved models there: {', '.join(names)}" if names else "there are no saved models there yet"
        raise FileNotFoundError(f"no model named '{text}' in {folder} ({known})")
    return path


def list_models(folder: Optional[PathLike] = None) -> list[ModelInfo]:
    """The model files in ``folder`` (the per-user folder by default), by name, reading only their
    headers; an absent folder holds none."""
    folder = Path(folder).expanduser() if folder is not None else default_model_folder()
    if not folder.is_dir():
        return []
    infos = []
    for path in sorted(folder.iterdir()):
        if not path.name.lower().endswith(MODEL_EXTENSION) or path.name.startswith(".") or not path.is_file():
            continue
        try:
            record = read_model_record(path)
        except (InputError, OSError) as error:
            infos.append(ModelInfo(name=model_name(path), path=path, problem=str(error)))
            continue
        config, training = record["config"], record["training"]
        trained_on = "x".join(str(n) for n in training["shape_kji"][::-1])
        if training["frames"] > 1:
            trained_on += f", {training['frames']} frames"
        infos.append(
            ModelInfo(
                name=model_name(path),
                path=path,
                method=str(config.get("method", "")),
                dimensions=str(config.get("model", {}).get("dimensions", "")),
                noise_model=str(record["noise"]["model"]),
                trained_on=trained_on,
                created=str(record["created"]),
                library_version=str(record["library_version"]),
            )
        )
    return infos
