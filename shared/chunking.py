"""Cutting a Service Bus batch into chunks of bounded bytes, as replay cuts a file (issue 12).

The host delivers up to ``maxMessageBatchSize`` messages at once (host.json: 500), each up to the
namespace's message size (256 KiB Standard, up to 100 MB Premium), and a contract body may be an
envelope (a JSON array) of many notifications. Parsed notifications and the rows the engine makes of
them take about six times their bytes, so the handler never parses more than ``max_bytes`` of bodies
at a time (``DES_BATCH_BYTES``, default 2 MiB, the same ceiling as ``des replay --batch-bytes``):

* messages are grouped in delivery order into chunks of at most ``max_bytes`` bytes of bodies (a
  larger message is a chunk alone);
* a larger message whose body is a contract envelope is cut into sub-envelopes of at most
  ``max_bytes`` (a larger element is one alone), its elements kept verbatim and in order, without
  parsing them (msgspec's ``Raw`` slices of the body). What is not a well-formed JSON array of
  valid UTF-8 (a single notification, malformed JSON, invalid UTF-8, a Dataverse message) stays
  whole: the contract gives it its outcome.

Each chunk is then parsed and applied on its own (shared.handlers); the outcomes are the same as for
the batch in one piece, since the engine's outcome of a notification does not depend on which
batch carries it (the latest version wins, deletes stay deleted).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

from shared.contract.parse import BOM_BYTES
from shared.source.dataverse.push import Message, is_dataverse_properties

_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_SPACE = b" \t\r\n"


def _body(message: Message) -> bytes | str:
    return message[0] if isinstance(message, tuple) else message


def size_of(message: Message) -> int:
    """Bytes of the message's body (a ``str`` counted as UTF-8, a lone surrogate as 3 bytes)."""
    body = _body(message)
    return len(body) if isinstance(body, bytes) else len(body.encode("utf-8", "surrogatepass"))


def split_envelope(body: bytes | str, max_bytes: int) -> list[bytes] | None:
    """A contract envelope longer than ``max_bytes`` as sub-envelopes of at most ``max_bytes``
    bytes (one element longer than that is one alone), elements verbatim and in order; None when
    ``body`` is short enough, or is not a well-formed JSON array (then it is parsed whole)."""
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return None
    if raw.startswith(BOM_BYTES):
        raw = raw[len(BOM_BYTES) :]  # tolerated, as the contract tolerates it
    if not raw.lstrip(_SPACE).startswith(b"["):
        return None
    try:
        elements = _RAW_LIST.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None  # malformed: the contract parser gives the reason
    parts: list[bytes] = []
    current: list[bytes] = []
    size = 2
    for element in elements:
        piece = bytes(element)
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            return None  # the whole body is unprocessable (not UTF-8), as the contract says
        if current and size + len(piece) + 1 > max_bytes:
            parts.append(b"[" + b",".join(current) + b"]")
            current, size = [], 2
        current.append(piece)
        size += len(piece) + 1
    if current:
        parts.append(b"[" + b",".join(current) + b"]")
    return parts


def chunks(messages: Sequence[Message], max_bytes: int) -> Iterator[list[Message]]:
    """``messages`` in delivery order as chunks of at most ``max_bytes`` bytes of bodies (a longer
    message alone, or cut by :func:`split_envelope` when it is a contract envelope)."""
    chunk: list[Message] = []
    size = 0
    for message in messages:
        n = size_of(message)
        if n > max_bytes:
            if chunk:
                yield chunk
                chunk, size = [], 0
            props = message[1] if isinstance(message, tuple) else None
            parts = None if is_dataverse_properties(props) else split_envelope(_body(message), max_bytes)
            if parts is None:
                yield [message]
            else:
                for part in parts:
                    yield [(part, props) if isinstance(message, tuple) else part]
            continue
        if chunk and size + n > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += n
    if chunk:
        yield chunk
