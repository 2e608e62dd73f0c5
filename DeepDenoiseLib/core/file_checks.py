"""Checks of a volume file's bytes that SimpleITK does not make, run before it reads the voxels.

* Content against extension: SimpleITK picks its reader by a file's content, so a PNG renamed
  ``.nrrd`` would be read as a PNG; :func:`check_content` says what the file really holds instead.
* NIfTI (``.nii``, ``.nii.gz``): SimpleITK fills the missing part of a truncated file with zeros and
  reads NaN and infinite voxels as 0. :func:`check_nifti_data` reads the header itself, checks that
  every voxel is there, and counts the non-finite ones (float data).
* MetaImage (``.mha``, ``.mhd``): SimpleITK refuses a truncated or missing data file with "No such
  file or directory"; :func:`check_metaimage_data` says what is missing instead.

NRRD needs nothing here: SimpleITK refuses its truncated files and keeps NaN as they are.
Every refusal is an :class:`~DeepDenoiseLib.core.validation.InputError` that names the file.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from DeepDenoiseLib.core.validation import InputError

#: What each readable extension must hold.
EXTENSION_FORMATS = {
    ".nii": "NIfTI",
    ".nii.gz": "NIfTI",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD",
    ".mha": "MetaImage",
    ".mhd": "MetaImage",
}
#: The extension to use for each format DeepDenoise reads (for the "rename it" advice).
FORMAT_EXTENSIONS = {"NIfTI": ".nii", "NRRD": ".nrrd", "MetaImage": ".mha", "DICOM": "(a folder of DICOM files)"}

_CHUNK_BYTES = 1 << 24
#: What :func:`sniff_format` calls a gzip-compressed NIfTI file (which must be named ``.nii.gz``).
GZIPPED_NIFTI = "gzip-compressed NIfTI"


def sniff_format(path: Path) -> Optional[str]:
    """What ``path`` holds, judged by its first bytes: a format name, ``"empty"``, or None (unknown)."""
    with open(path, "rb") as stream:
        head = stream.read(1024)
    if not head:
        return "empty"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as stream:
                inner = stream.read(1024)
        except (OSError, EOFError, zlib.error):
            return "gzip-compressed data"
        return GZIPPED_NIFTI if _is_nifti(inner) else "gzip-compressed data"
    if _is_nifti(head):
        return "NIfTI"
    signatures = [
        (b"NRRD000", "NRRD"),
        (b"\x89PNG", "PNG image"),
        (b"\xff\xd8\xff", "JPEG image"),
        (b"II*\x00", "TIFF image"),
        (b"MM\x00*", "TIFF image"),
        (b"GIF8", "GIF image"),
        (b"BM", "BMP image"),
        (b"PK\x03\x04", "zip archive"),
        (b"\x89HDF", "HDF5 file"),
        (b"%PDF", "PDF document"),
    ]
    for signature, name in signatures:
        if head.startswith(signature):
            return name
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    text = head.split(b"\n")
    keys = {line.split(b"=")[0].strip() for line in text if b"=" in line}
    if keys & {b"ObjectType", b"NDims", b"DimSize", b"ElementType"}:
        return "MetaImage"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "text"
        except UnicodeDecodeError:
            pass
    return None


def check_content(path: Path, extension: str) -> None:
    """Refuses a file whose content is not the format its extension names (when that can be told)."""
    expected = EXTENSION_FORMATS[extension]
    found = sniff_format(path)
    if found == GZIPPED_NIFTI:
        if extension == ".nii.gz":
            return
        if extension == ".nii":
            raise InputError(f"could not read '{path.name}': it is a gzip-compressed NIfTI file; rename it to end in .nii.gz")
        found = "NIfTI"
    if found is None or found == expected:
        return
    if found == "empty":
        raise InputError(f"could not read '{path}': the file is empty (0 bytes); check that it was copied or exported completely")
    if found in FORMAT_EXTENSIONS:
        advice = f"rename it to end in {FORMAT_EXTENSIONS[found]}" if found != "DICOM" else "put it in a folder and give the folder"
        raise InputError(f"could not read '{path.name}': it is named as a {expected} file but holds {found} data; {advice}")
    article = "" if found in ("text", "gzip-compressed data") else "a "
    raise InputError(
        f"could not read '{path.name}': it is named as a {expected} file but holds {article}{found}, which DeepDenoise "
        "does not read; it reads NIfTI, NRRD and MetaImage files and DICOM series (convert it to one of these first)"
    )


# --- NIfTI ------------------------------------------------------------------------------------------

#: NIfTI datatype codes: (numpy kind and size, whether it is floating point).
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def _is_nifti(head: bytes) -> bool:
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
        return True
    return len(head) >= 12 and head[4:7] in (b"n+2", b"ni2")


def _nifti_header(head: bytes) -> Optional[tuple[str, list[int], int, int, int, list[float]]]:
    """(byte order, dimensions, datatype, bits per voxel, offset of the voxels, voxel sizes) from a
    NIfTI-1 or NIfTI-2 header; None if the header cannot be understood (SimpleITK then says why)."""
    for order in ("<", ">"):
        size = struct.unpack(order + "i", head[:4])[0] if len(head) >= 4 else 0
        if size == 348 and len(head) >= 348:
            dims = list(struct.unpack(order + "8h", head[40:56]))
            datatype, bitpix = struct.unpack(order + "2h", head[70:74])
            pixdim = list(struct.unpack(order + "8f", head[76:108]))
            offset = struct.unpack(order + "f", head[108:112])[0]
            break
        if size == 540 and len(head) >= 540:
            datatype, bitpix = struct.unpack(order + "2h", head[12:16])
            dims = list(struct.unpack(order + "8q", head[16:80]))
            pixdim = list(struct.unpack(order + "8d", head[104:168]))
            offset = struct.unpack(order + "q", head[168:176])[0]
            break
    else:
        return None
    count = dims[0]
    if not 1 <= count <= 7 or any(n < 1 for n in dims[1 : count + 1]) or bitpix <= 0 or not math.isfinite(offset):
        return None
    return order, dims[1 : count + 1], int(datatype), int(bitpix), int(offset), pixdim[1 : min(count, 3) + 1]


def check_nifti_data(path: Path) -> list[str]:
    """Refuses a NIfTI file whose voxel data is incomplete, or (float data) holds NaN or infinite
    values, which SimpleITK would read as zeros. Returns warnings about what SimpleITK will read
    differently from the header: a voxel size of zero or NaN, which it reads as 1 mm."""
    with open(path, "rb") as stream:
        compressed = stream.read(2) == b"\x1f\x8b"  # by content: a .nii.gz need not be compressed
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            head = stream.read(540)
            header = _nifti_header(head)
            if header is None:
                return []
            order, dims, datatype, bitpix, offset, pixdim = header
            warnings = _spacing_warnings(path, pixdim)
            expected = math.prod(dims) * bitpix // 8
            if not compressed:
                available = path.stat().st_size - offset
                if available < expected:
                    raise _truncated(path, expected, max(available, 0))
                if datatype not in _NIFTI_FLOATS:
                    return warnings
            stream.seek(offset)
            _scan_voxels(path, stream, expected, np.dtype(order + _NIFTI_FLOATS.get(datatype, "u1")), datatype in _NIFTI_FLOATS)
            return warnings
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise InputError(f"'{path}' is damaged: its compressed data cannot be read to the end ({error}); export it again") from error


def _spacing_warnings(path: Path, pixdim: list[float]) -> list[str]:
    broken = [f"{axis} ({size:g})" for axis, size in zip("ijk", pixdim) if not (math.isfinite(size) and size != 0)]
    if not broken:
        return []
    return [
        (
            f"the header of '{path.name}' gives no usable voxel size along {', '.join(broken)}: it was read as 1 mm "
            "there, and the outputs carry 1 mm; fix the header if the voxel size matters"
        )
    ]


def _scan_voxels(path: Path, stream, expected: int, dtype: np.dtype, floats: bool) -> None:
    """Reads ``expected`` bytes of voxels in chunks: refuses fewer, and (floats) non-finite values."""
    read, nan, inf = 0, 0, 0
    chunk_bytes = _CHUNK_BYTES - _CHUNK_BYTES % dtype.itemsize
    while read < expected:
        chunk = stream.read(min(chunk_bytes, expected - read))
        if not chunk:
            raise _truncated(path, expected, read)
        read += len(chunk)
        if floats:
            values = np.frombuffer(chunk[: len(chunk) - len(chunk) % dtype.itemsize], dtype=dtype)
            finite = np.isfinite(values)
            if not finite.all():
                nan += int(np.count_nonzero(np.isnan(values)))
                inf += int(values.size - np.count_nonzero(finite)) - int(np.count_nonzero(np.isnan(values)))
    if nan or inf:
        parts = [f"{n:,} {what}" for n, what in ((nan, "NaN"), (inf, "infinite")) if n]
        raise InputError(
            f"'{path.name}' holds {' and '.join(parts)} voxel value(s) out of {expected // dtype.itemsize:,}; "
            "fill them with finite values first (e.g. numpy.nan_to_num, or the background value)"
        )


def _truncated(path: Path, expected: int, available: int) -> InputError:
    share = 100.0 * available / expected if expected else 0.0
    return InputError(
        f"'{path.name}' is truncated: its header promises {expected:,} bytes of voxel data but only "
        f"{available:,} ({share:.1f} %) are there; copy or export the file again"
    )


# --- MetaImage --------------------------------------------------------------------------------------

_META_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}  # fmt: skip


def check_metaimage_data(path: Path) -> None:
    """Refuses a MetaImage file whose voxel data is missing or incomplete, saying which (SimpleITK
    says "No such file or directory" for both)."""
    fields, data_start = _metaimage_header(path)
    data_file = fields.get("ElementDataFile")
    try:
        dims = [int(n) for n in fields.get("DimSize", "").split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        item = _META_BYTES[fields.get("ElementType", "")]
    except (ValueError, KeyError):
        return  # SimpleITK explains a header it cannot use
    if data_file is None or not dims or "HeaderSize" in fields or data_file.split()[0] in ("LIST",) or "%" in data_file:
        return
    expected = math.prod(dims) * channels * item
    if data_file == "LOCAL":
        source, start = path, data_start
    else:
        source, start = path.parent / data_file, 0
        if not source.is_file():
            raise InputError(f"the data file '{data_file}' that '{path.name}' names is missing; keep it next to '{path.name}'")
    available = source.stat().st_size - start
    compressed = fields.get("CompressedData", "False").strip().lower() == "true"
    if compressed:
        size = fields.get("CompressedDataSize")
        if size is not None and size.strip().isdigit():
            if available < int(size):
                raise _truncated(source, int(size), max(available, 0))
            return
        available = _inflated_size(source, start)
    if available < expected:
        raise _truncated(source, expected, max(available, 0))


def _metaimage_header(path: Path) -> tuple[dict[str, str], int]:
    """The header's ``key = value`` fields and the offset right after ``ElementDataFile``'s line."""
    fields: dict[str, str] = {}
    offset = 0
    with open(path, "rb") as stream:
        for line in stream:
            offset += len(line)
            text = line.decode("latin-1").strip()
            if "=" in text:
                key, value = (part.strip() for part in text.split("=", 1))
                fields[key] = value
                if key == "ElementDataFile":
                    break
            if offset > 1 << 16:
                break
    return fields, offset


def _inflated_size(path: Path, start: int) -> int:
    """How many bytes the zlib stream from ``start`` holds, counting only what can be read."""
    inflater = zlib.decompressobj()
    total = 0
    with open(path, "rb") as stream:
        stream.seek(start)
        while True:
            chunk = stream.read(_CHUNK_BYTES)
            if not chunk:
                break
            try:
                total += len(inflater.decompress(chunk))
            except zlib.error:
                break
    return total
