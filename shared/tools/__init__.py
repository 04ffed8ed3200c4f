"""Tooling that does not deploy: the demo, benchmarks, simulators, the local admin-API server, the
admin API's command-line client and the Azurite starter.

``.funcignore`` keeps this package out of the function app's deployment package, and nothing else
under ``shared/`` imports it (tests/unit/test_import_graph.py checks both); the ``des`` command line
(shared/cli.py) imports each module only inside the subcommand that needs it. Its third-party
dependencies (rich, psutil, uvicorn) are the ``cli`` extra: ``pip install -e .[cli]``.
"""
