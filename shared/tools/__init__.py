"""Tools that do not deploy: demo, bench, simulators, local server helpers (excluded by .funcignore)."""
