"""Test-session settings that must exist before any test module imports torch."""

import os

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core CI machine, spinning threads made
# torch work 10-30x slower (the CLI and the Slicer worker set the same).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
