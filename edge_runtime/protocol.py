"""The wire: msgpack-RPC messages framed like Neovim's, with a bound on the size of one message.

    request       [0, id, method, params]
    response      [1, id, error, result]      error: None or {"code": str, "message": str}
    notification  [2, method, params]

`docs/protocol.md` documents the methods. This module knows nothing of models; the LSP server uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024 * 1024
REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
# The `reasoning` parameter of explain (gpt-oss's reasoning efforts), least first.
REASONING_EFFORTS = ("low", "medium", "high")


class FrameError(Exception):
    """The byte stream is not (or no longer) a sequence of valid messages: the connection must close."""

    code = "malformed_frame"

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": str(self)}


class FrameTooLarge(FrameError):
    code = "frame_too_large"


@dataclass
class Message:
    kind: int
    id: int | None
    method: str | None
    params: Any
    error: Any = None
    result: Any = None


class FrameReader:
    """Bytes in, messages out; raises FrameError on anything that cannot be a message."""

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_bytes = max_bytes
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max_bytes, strict_map_key=False)

    def feed(self, data: bytes) -> list[Message]:
        try:
            self.unpacker.feed(data)
        except msgpack.BufferFull as exc:
            raise FrameTooLarge(f"a message exceeds {self.max_bytes} bytes") from exc
        messages = []
        try:
            for obj in self.unpacker:
                messages.append(parse_message(obj))
        except FrameError:
            raise
        except msgpack.BufferFull as exc:
            raise FrameTooLarge(f"a message exceeds {self.max_bytes} bytes") from exc
        except Exception as exc:  # msgpack raises several types (ExtraData, FormatError, StackError, ValueError…)
            raise FrameError(f"not a msgpack message: {exc.__class__.__name__}") from exc
        return messages


def parse_message(obj: Any) -> Message:
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], int) or isinstance(obj[0], bool):
        raise FrameError("a message must be an array starting with its type (0, 1 or 2)")
    kind = obj[0]
    if kind == REQUEST and len(obj) == 4 and _is_id(obj[1]) and isinstance(obj[2], str):
        return Message(REQUEST, obj[1], obj[2], obj[3])
    if kind == RESPONSE and len(obj) == 4 and _is_id(obj[1]):
        return Message(RESPONSE, obj[1], None, None, error=obj[2], result=obj[3])
    if kind == NOTIFICATION and len(obj) == 3 and isinstance(obj[1], str):
        return Message(NOTIFICATION, None, obj[1], obj[2])
    raise FrameError(f"malformed message of type {kind!r}")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def pack(obj: Any) -> bytes:
    return bytes(msgpack.packb(obj, use_bin_type=True))


def request(msgid: int, method: str, params: Any) -> bytes:
    return pack([REQUEST, msgid, method, params])


def response(msgid: int, error: Any, result: Any) -> bytes:
    return pack([RESPONSE, msgid, error, result])


def notification(method: str, params: Any) -> bytes:
    return pack([NOTIFICATION, method, params])
