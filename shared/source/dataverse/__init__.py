"""The Dataverse change-tracking source (issue 9; docs/dataverse.md).

* :mod:`.mapping` - core, no I/O: Web API rows and metadata -> contract v1 notifications, delete versions.
* :mod:`.client` - adapter: the Web API over httpx (paging, retries, throttling, auth).
* :mod:`.cursors` - the cursor per (profile, entity) in the admin store (lease + compare-and-set), status.
* :mod:`.runner` - one page per unit of work (:func:`run_page`), the :class:`Sink` port, full passes.
* :mod:`.sink` - the engine-direct sink (``des sync``); the function app publishes to Service Bus instead.
* :mod:`.settings` - the source's settings (frozen dataclass, setting names).
* :mod:`.cli` - ``des sync``.

Import the submodules directly; this package imports nothing, so the core stays free of httpx.
"""
