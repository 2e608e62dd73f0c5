"""``python -m DeepDenoiseLib`` runs the command line."""

import sys

from DeepDenoiseLib.cli.commands import main

sys.exit(main())
