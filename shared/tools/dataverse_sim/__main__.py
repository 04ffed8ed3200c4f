"""``python -m shared.tools.dataverse_sim`` (the lead wires it as ``des simulate dataverse``)."""

from __future__ import annotations

import sys

from shared.tools.dataverse_sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
