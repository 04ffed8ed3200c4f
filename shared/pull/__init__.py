"""The Dataverse source inside the app (issue 9): what turns dv-source's runner into a service.

* :mod:`.auth` - a profile source's token provider (azure-identity, scope ``<environment-url>/.default``;
  ``DES_DATAVERSE_TOKEN`` for simulators and tests).
* :mod:`.checks` - validate / test / activate: token, reachability, organization, and per table
  exists, change tracking, organization-level read; each a named step with a clear reason.
* :mod:`.queue` - the work queue of page units: a Storage queue (``AzureWebJobsStorage``), or an
  in-process queue where no storage is configured.
* :mod:`.work` - one page per queue message (claim, run one page, advance, re-enqueue), the poll
  timer, activation, per-entity status.
* :mod:`.worker` - ``des api``'s in-process worker: drains the queue and polls on the schedule.

The function app's functions (``source_pages``, ``source_poll``) each convert their binding into one
call here. Import the submodules directly.
"""
