"""Retries through blobs: park a batch on a transient destination error, retry it later, log what still fails.

The design (docs/storage.md has the whole story):

1. The Service Bus handler catches a transient destination error, writes the batch's valid
   notifications to an encrypted blob ``retry/<profile>/<batch key>.json`` (metadata: attempt 0,
   not-before = now + interval, first-seen, profile, count) and returns normally, so the messages
   are completed only after the blob is safely written. The batch key is a hash of the
   notifications: a redelivered batch parks into the same blob, never twice. In profile mode
   (fan-out) only the failing profile's notifications are parked, in full (:func:`park_profile`),
   under that profile; the profiles that committed are not applied again.
2. The blob-triggered function (Event Grid source) gets the new blob and calls
   :func:`run_retry_blob`: it waits for the not-before time only when that is within the inline
   wait budget (short intervals: the default is 5 s), then :func:`process_retry_blob` takes a blob
   lease (one worker at a time), applies to the blob's profile (single-destination mode: the one
   destination; profile mode: that profile's destination through the fan-out's engine, with the
   profile's retry count and interval), and either deletes the blob (done), reschedules it by
   updating its metadata (attempt + 1, new not-before; no rewrite, so no new event and no busy
   loop), or, after the profile's retry count, writes each notification to the failure log with
   the reason and deletes the blob. A profile deactivated meanwhile counts the parked
   notifications as skipped; a profile deleted meanwhile leaves them in
   ``unprocessablemessages/unrouted/`` with the reason (counted as unprocessable under the
   store's unrouted key), so nothing is dropped silently.
3. Long intervals are not waited for in a worker: the retry sweeper (a timer function, every
   minute) lists ``retry/`` with metadata and processes the blobs that are due. It also picks up
   blobs whose event was lost, and is the local polling mode (Azurite has no Event Grid).
4. Poison: an exception (a blob that cannot be decrypted, storage trouble) propagates, so the host
   retries the blob trigger and finally puts the blob on its poison queue
   ``webjobs-blobtrigger-poison`` (shared with every blob trigger on the account: the
   ``retry_poison`` timer peeks it and acts on our receipts only, :mod:`~shared.retry.poison`),
   and :func:`~shared.retry.sweep.give_up` moves the blob out of limbo: its
   notifications to the failure log, or, if it cannot be read, the encrypted blob as it is to
   ``unprocessablemessages/`` with the reason. The sweeper counts its own crashes per blob in the
   metadata and does the same after the same threshold.

Modules: :mod:`~shared.retry.policy` (the policy), :mod:`~shared.retry.park` (step 1),
:mod:`~shared.retry.attempt` (step 2), :mod:`~shared.retry.sweep` (steps 3 and 4),
:mod:`~shared.retry.poison` (the shared poison queue),
:mod:`~shared.retry.ports` (the narrow dependencies: a router, the blob stores, a clock),
:mod:`~shared.retry.batch` (what parked batches are made of). The package imports nothing itself, so
:mod:`shared.config` can use the policy without loading the rest.
"""

