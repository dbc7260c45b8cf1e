"""The pipe between bncli and its worker: requests pickled, replies without pickle.

A request is bncli's own data (the case's arrays and eps), pickled. A reply is what a target
made, so it is never unpickled: one length prefix, then a JSON document, then the raw float64
bytes of each array it names. The parent reads a reply within the call's deadline and a
byte limit from the case's size, so neither a hung worker nor a huge result can hold it.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import select
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from .judge import TargetError

HEADER = struct.Struct("<Q")
# Room for a reply's JSON beside its arrays: the kind, a line of text, the names of the changed inputs.
ENVELOPE = 64 * 1024
FLOAT = np.dtype("<f8")


class UnreadableReply(TargetError):
    """A reply that is not one bncli can read: too long, cut short or malformed (one line)."""


class TimedOut(Exception):
    """The deadline passed before a whole request went or a whole reply came."""


@dataclass(frozen=True)
class Reply:
    """``kind``: ready, input-error, ok, raised or unusable; ``text`` the line for the last three."""

    kind: str
    text: str = ""
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)


def send_request(descriptor: int, message, deadline: float | None) -> None:
    """Write ``message`` to the worker's stdin, a non-blocking ``descriptor``, before ``deadline``
    (:class:`TimedOut`): a worker that stops reading (a target's thread holding the interpreter)
    cannot hold bncli once the pipe is full. OSError when the worker is gone."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    unsent = memoryview(HEADER.pack(len(data)) + data)
    while unsent:
        _wait(descriptor, deadline, writing=True)
        try:
            unsent = unsent[os.write(descriptor, unsent) :]
        except BlockingIOError:
            pass


def receive_request(stream):
    """The next request, or None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    return pickle.loads(stream.read(HEADER.unpack(header)[0]))


def send_reply(stream, reply: Reply) -> None:
    arrays = {name: np.ascontiguousarray(values, dtype=FLOAT) for name, values in reply.outputs.items()}
    document = {
        "kind": reply.kind,
        "text": reply.text,
        "changed": reply.changed,
        "arrays": [[name, list(values.shape)] for name, values in arrays.items()],
    }
    encoded = json.dumps(document).encode()
    body = HEADER.pack(len(encoded)) + encoded + b"".join(values.tobytes() for values in arrays.values())
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


def reply_limit(values: int) -> int:
    """The longest reply a result of ``values`` numbers in all can take."""
    return ENVELOPE + values * FLOAT.itemsize


def receive_reply(stream, deadline: float | None, limit: int) -> Reply | None:
    """The next reply; None when the worker ended before a whole one came.

    Raises :class:`TimedOut` past ``deadline`` (``time.monotonic()``; None waits as long as it
    takes) and :class:`UnreadableReply` for a reply longer than ``limit`` bytes or malformed.
    """
    descriptor = stream.fileno()
    header = _read_exactly(descriptor, HEADER.size, deadline)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > limit:
        raise UnreadableReply(f"its reply holds {length} bytes, more than the {limit} a result of this case needs")
    body = _read_exactly(descriptor, length, deadline)
    return None if body is None else _decoded(body)


def _read_exactly(descriptor: int, size: int, deadline: float | None) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        _wait(descriptor, deadline, writing=False)
        chunk = os.read(descriptor, min(size - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _wait(descriptor: int, deadline: float | None, writing: bool) -> None:
    """Until ``descriptor`` can be read or written; :class:`TimedOut` when ``deadline`` passes first."""
    remaining = None if deadline is None else deadline - time.monotonic()
    if remaining is not None and remaining <= 0:
        raise TimedOut
    watched = ([], [descriptor]) if writing else ([descriptor], [])
    if not any(select.select(*watched, [], remaining)):
        raise TimedOut


def _decoded(body: bytes) -> Reply:
    try:
        (length,) = HEADER.unpack_from(body)
        document = json.loads(body[HEADER.size : HEADER.size + length])
        offset = HEADER.size + length
        outputs = {}
        for name, shape in document["arrays"]:
            if not all(isinstance(extent, int) and extent >= 0 for extent in shape):
                raise ValueError("a shape of other than counts")
            size = math.prod(shape) * FLOAT.itemsize
            if size > len(body) - offset:
                raise ValueError("an array longer than the reply")
            outputs[str(name)] = np.frombuffer(body, FLOAT, math.prod(shape), offset).reshape(shape)
            offset += size
        return Reply(str(document["kind"]), str(document["text"]), outputs, [str(c) for c in document["changed"]])
    except (ValueError, KeyError, TypeError, struct.error) as error:
        raise UnreadableReply(f"its reply cannot be read ({type(error).__name__})") from None
