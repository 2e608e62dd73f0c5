"""Writing a run's files as one: all of them or none, and never losing a file that was there before.

Every file is first written to a hidden temporary file beside its target (same folder, so the final
rename is atomic). Only when all of them are written are they renamed into place, one after the
other, with the signals that stop a run held back meanwhile (interrupts.py). A file that already
sat at a target is kept under a hidden backup name until every rename succeeded, and put back if
one fails. So a run that fails, or is interrupted, at any point leaves every target as it found it,
and no temporary file behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from DeepDenoiseLib.core import interrupts

PathLike = Union[str, "os.PathLike[str]"]

#: Writes one file's content to the path it is given (a temporary name beside the target).
FileWriter = Callable[[Path], None]

#: Extensions of more than one suffix, kept whole on temporary names (writers choose the format by them).
_DOUBLE_SUFFIXES = (".nii.gz",)


def temporary_path(target: PathLike, kind: str = "tmp") -> Path:
    """A hidden, unique name beside ``target`` with the same extension: ``.name.tmp-1a2b3c.nii.gz``."""
    target = Path(target)
    name = target.name
    extension = next((s for s in _DOUBLE_SUFFIXES if name.lower().endswith(s)), target.suffix)
    stem = name[: len(name) - len(extension)] if extension else name
    return target.parent / f".{stem}.{kind}-{secrets.token_hex(6)}{extension}"


@dataclass
class _Staged:
    target: Path
    temporary: Path
    backup: Optional[Path] = None
    #: The target was moved to the backup name (no hard links here), so it is absent until restored.
    moved_away: bool = False
    replaced: bool = False


def write_files(
    files: Sequence[tuple[PathLike, FileWriter]],
    on_file: Optional[Callable[[int, Path], None]] = None,
    final: bool = False,
) -> list[Path]:
    """Writes each ``(target, writer)``: all the targets, or, if anything fails or the run is
    interrupted, none of them (each left as it was). ``on_file(index, target)`` is called before
    each file is written (for progress). The targets must be distinct. ``final``: these are the
    command's outputs, so once they are in place an interrupt no longer cancels it
    (:func:`DeepDenoiseLib.core.interrupts.outputs_in_place`). Returns the targets."""
    staged = [_Staged(Path(target), temporary_path(target)) for target, _ in files]
    try:
        for index, ((_, writer), item) in enumerate(zip(files, staged)):
            if on_file is not None:
                on_file(index, item.target)
            writer(item.temporary)
        with interrupts.shielded():
            _commit(staged)
            if final:
                interrupts.outputs_in_place()
    finally:
        for item in staged:
            if not item.replaced:
                _remove(item.temporary)
    return [item.target for item in staged]


def _commit(staged: list[_Staged]) -> None:
    """Renames every temporary file onto its target, keeping what was there as a backup until all
    succeeded; on any failure puts every target back as it was."""
    try:
        for item in staged:
            if os.path.lexists(item.target):
                item.backup = temporary_path(item.target, "previous")
                try:
                    os.link(item.target, item.backup, follow_symlinks=False)
                except OSError:  # no hard links here (some network and FAT file systems): move it aside
                    os.replace(item.target, item.backup)
                    item.moved_away = True
            os.replace(item.temporary, item.target)
            item.replaced = True
    except BaseException:
        for item in reversed(staged):
            _restore(item)
        raise
    for item in staged:
        if item.backup is not None:
            _remove(item.backup)


def _restore(item: _Staged) -> None:
    """Puts ``item``'s target back as it was before the commit began."""
    if item.backup is not None:
        if item.replaced or item.moved_away:
            os.replace(item.backup, item.target)
        else:
            _remove(item.backup)
    elif item.replaced:
        _remove(item.target)
    item.replaced = False


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
