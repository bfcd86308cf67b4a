"""Entry point: ``devstack/stack`` runs this file; ``python -m devstack`` works from the checkout too."""

import sys
from pathlib import Path

if not __package__:  # run as a file (devstack/stack): import the package from the checkout, not from devstack/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from devstack.cli import main

if __name__ == "__main__":
    sys.exit(main())
