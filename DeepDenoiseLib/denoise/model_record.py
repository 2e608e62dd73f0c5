"""The JSON record a DeepDenoise model file carries, and how it is read and checked without torch.

A model file is a safetensors file (8-byte little-endian header length, a JSON header, then the raw
weights). The header's ``__metadata__`` holds, under the key ``deepdenoise``, the JSON record that
model_file.py writes: format version, run configuration, network geometry, normalisation, noise
model, training summary, library version, and SHA-256 digests of the weights and of the record.

This module reads that header alone, refusing pickles before anything else, so that listing models
(model_folder.py, the Slicer panel) is quick and never runs code from a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

from DeepDenoiseLib.core.validation import InputError

PathLike = Union[str, "os.PathLike[str]"]

FORMAT_NAME = "deepdenoise-model"
FORMAT_VERSION = 1
METADATA_KEY = "deepdenoise"
MODEL_EXTENSION = ".safetensors"
#: A safetensors header larger than this is not one DeepDenoise wrote (ours are a few kilobytes).
MAX_HEADER_BYTES = 16 * 1024 * 1024

RECORD_KEYS = (
    "format", "format_version", "library_version", "created", "config", "network", "normalization",
    "noise", "training", "weights_sha256", "record_sha256",
)  # fmt: skip
#: The keys of each section of the record.
SECTION_KEYS = {
    "network": ("kind", "spatial_dims", "in_channels", "patch_spatial", "slice_axes", "volume_shape_kji", "spacing_zyx"),
    "normalization": ("low_percentile", "high_percentile", "training_fit"),
    "noise": ("model", "sigma", "training_sigma", "fusion"),
    "training": ("steps", "seconds", "stopped_by", "best_validation_loss", "device", "frames", "shape_kji"),
}
# What pickles start with: a zip archive (torch.save since PyTorch 1.6) or the PROTO opcode.
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")


def record_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 of the record's canonical JSON, less its own ``record_sha256``."""
    content = {key: value for key, value in record.items() if key != "record_sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def record_from_bytes(data: bytes, path: PathLike, file_size: int) -> dict[str, Any]:
    """The checked record from the start of a model file (at least its header) of ``file_size`` bytes."""
    path = Path(path)
    return _record_from_header(_parse_header(data, path, file_size), path)


def model_name(path: PathLike) -> str:
    """A model's name: its file name without ``.safetensors``."""
    name = Path(path).name
    return name[: -len(MODEL_EXTENSION)] if name.lower().endswith(MODEL_EXTENSION) else name


def read_model_record(path: PathLike) -> dict[str, Any]:
    """The JSON record of a model file, read from its header alone (the weights are not read or
    checked): what a list of models shows. Raises :class:`InputError` as :func:`load_model` would
    for a file that is not a DeepDenoise model."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    with open(path, "rb") as stream:
        start = stream.read(8 + MAX_HEADER_BYTES)
    return record_from_bytes(start, path, path.stat().st_size)


def _parse_header(start: bytes, path: Path, file_size: int) -> dict[str, Any]:
    """The safetensors header (8-byte little-endian length, then JSON), refusing pickles first."""
    # A safetensors header length may itself begin with byte 0x80; its JSON then starts at byte 8.
    if start.startswith(_PICKLE_MAGIC) and start[8:9] != b"{":
        raise InputError(
            f"'{path.name}' is a pickle file (as torch.save writes), which is refused: loading a pickle can run "
            f"any code. DeepDenoise models are {MODEL_EXTENSION} files written by 'deepdenoise denoise --save-model'"
        )
    not_safetensors = f"'{path.name}' is not a DeepDenoise model file (not in the safetensors format)"
    if len(start) < 8:
        raise InputError(not_safetensors)
    length = int.from_bytes(start[:8], "little")
    if length < 2 or length > MAX_HEADER_BYTES or 8 + length > file_size or len(start) < 8 + length:
        raise InputError(not_safetensors)
    try:
        header = json.loads(start[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{not_safetensors}: its header is not JSON") from error
    if not isinstance(header, dict):
        raise InputError(not_safetensors)
    return header


def _record_from_header(header: dict[str, Any], path: Path) -> dict[str, Any]:
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        raise InputError(
            f"'{path.name}' is a safetensors file but not a DeepDenoise model (its header has no "
            f"'{METADATA_KEY}' record); DeepDenoise applies only models it saved itself"
        )
    try:
        record = json.loads(metadata[METADATA_KEY])
    except (TypeError, ValueError) as error:
        raise InputError(f"'{path.name}': its DeepDenoise record is not valid JSON; the file was damaged") from error
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise InputError(f"'{path.name}': its record is not a {FORMAT_NAME} record")
    version = record.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"'{path.name}': unknown model format version {version!r}")
    if version > FORMAT_VERSION:
        raise InputError(
            f"'{path.name}' was saved by a newer DeepDenoise (model format {version}; this one reads up to "
            f"{FORMAT_VERSION}): update DeepDenoise to use it"
        )
    _check_keys(record, RECORD_KEYS, path, "record")
    for section, keys in SECTION_KEYS.items():
        if not isinstance(record[section], dict):
            raise InputError(f"'{path.name}': the record's {section} section is not a mapping")
        _check_keys(record[section], keys, path, f"record's {section} section")
    if record["record_sha256"] != record_digest(record):
        raise InputError(
            f"'{path.name}': its record does not match its SHA-256 digest: the file was edited or damaged after "
            "it was saved; save the model again"
        )
    return record


def _check_keys(mapping: dict[str, Any], expected: tuple[str, ...], path: Path, where: str) -> None:
    unknown = sorted(set(mapping) - set(expected))
    if unknown:
        raise InputError(f"'{path.name}': unknown key(s) in its {where}: {', '.join(unknown)}")
    missing = [key for key in expected if key not in mapping]
    if missing:
        raise InputError(f"'{path.name}': its {where} lacks {', '.join(missing)}")
