"""``python -m DeepDenoiseLib`` runs the command line."""

import sys

from DeepDenoiseLib.cli import main

sys.exit(main())
