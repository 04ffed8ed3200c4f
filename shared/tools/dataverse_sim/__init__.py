"""A Dataverse Web API simulator (named as one): a generated organization behind the Web API.

It follows shared/reference/dataverse.md, not our own code's assumptions. Modules:

- ``schema``: tables, columns, option sets, lookups, the N:N relationship (account, contact,
  opportunity, des_account_contact; systemuser, team, transactioncurrency as lookup targets).
- ``values``: the Python representation of column values, coercion, exact-decimal JSON, SimError.
- ``state``: the in-memory state machine: rows, the organization-wide version counter, tombstones,
  delta tokens (issue, check, expire), writes with cascades (pure, no HTTP).
- ``generate``: the seeded organization and seeded random change histories.
- ``odata``: Prefer headers, $select, annotations, row JSON, paging cookies ($skiptoken).
- ``query``: the small $filter evaluator.  ``metadata``: EntityDefinitions, Attributes casts, option sets.
- ``push``: Dataverse Service Bus messages (RemoteExecutionContext JSON) for the simulator's own changes.
- ``simulator``: the facade (state + bearer tokens + injected faults + push) and its control API.
- ``app``: the FastAPI app (``<base>/api/data/v9.x/...`` and the ``/_sim/...`` control endpoints).
- ``server``: :func:`run_simulator`, a context manager serving it on a free loopback port in a thread.
- ``cli``: ``main(argv)`` (``python -m shared.tools.dataverse_sim``; wired as ``des simulate dataverse``).

Switches (every point the reference marks UNVERIFIED, and what it does not document): see
:class:`~shared.tools.dataverse_sim.switches.Switches` (Web API) and
:class:`~shared.tools.dataverse_sim.switches.PushOptions` (push), and docs/dataverse-simulator.md.
"""

from shared.tools.dataverse_sim.server import RunningSimulator, run_simulator
from shared.tools.dataverse_sim.simulator import DEFAULT_TOKEN, DataverseSimulator
from shared.tools.dataverse_sim.state import DataverseState, SteppingClock
from shared.tools.dataverse_sim.switches import PushOptions, Switches

__all__ = [
    "DEFAULT_TOKEN",
    "DataverseSimulator",
    "DataverseState",
    "PushOptions",
    "RunningSimulator",
    "SteppingClock",
    "Switches",
    "run_simulator",
]
