"""Writes the shared benchmark volumes into one bundle file, for a GPU machine that the shared folder
cannot reach.

The device tool sends the checkout and the paths named in its ``carry``, not ``../shared``, and the
GPU machine's Python has torch and scipy but not SimpleITK or nibabel. So the clean volume, the mask
and the two shared Rician volumes go as arrays with the clean volume's grid, in one compressed
``.npz`` (about 16 MB) that ``--shared`` of benchmark_denoise.py and benchmark_steps.py can name
instead of the folder (bench/variants.py). Here, before the device call (which carries ``.gpu`` and
runs bench/gpu_run.sh there)::

    echo /.gpu/ >> .git/info/exclude
    python bench/gpu_bundle.py --shared ../shared/data --output .gpu/shared.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout: find DeepDenoiseLib and bench
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from bench.variants import BUNDLE_SUFFIX, BUNDLED_FILES, SharedDataMissing  # noqa: E402
from DeepDenoiseLib.core.volume_io import read_volume  # noqa: E402


def write_bundle(shared_dir: Path, output: Path) -> Path:
    """Reads every file of :data:`BUNDLED_FILES` from ``shared_dir`` and writes them to ``output``;
    refuses volumes that are not on the clean volume's grid."""
    if output.suffix != BUNDLE_SUFFIX:
        raise ValueError(f"the bundle must be a {BUNDLE_SUFFIX} file; got {output.name}")
    missing = [name for name in BUNDLED_FILES.values() if not (shared_dir / name).is_file()]
    if missing:
        raise SharedDataMissing(f"{shared_dir} lacks {', '.join(missing)}; pass the shared folder with --shared DIR")
    volumes = {key: read_volume(shared_dir / name) for key, name in BUNDLED_FILES.items()}
    clean = volumes["clean"]
    for key, volume in volumes.items():
        if not clean.same_geometry(volume):
            raise ValueError(f"{BUNDLED_FILES[key]} is not on the clean volume's grid")
    arrays = {key: np.asarray(volume.array, dtype=np.uint8 if key == "mask" else np.float32) for key, volume in volumes.items()}
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        output, spacing=np.asarray(clean.spacing), origin=np.asarray(clean.origin), direction=np.asarray(clean.direction), **arrays
    )
    return output


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared" / "data", help="the shared benchmark folder")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / ".gpu" / "shared.npz")
    args = parser.parse_args(argv)
    written = write_bundle(args.shared, args.output)
    print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
