"""Frames over a stream socket, with deadlines: shared by the grading side and the submission side."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

from grader.codec import HEADER, MAX_BLOB_BYTES, MAX_JSON_BYTES, CodecError, unpack_frame


class ChannelClosed(Exception):
    """The other side closed the socket (or died) before a whole frame arrived."""


class ChannelTimeout(Exception):
    """No whole frame arrived before the deadline."""


def write_all(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)


def _read_exact(sock: socket.socket, size: int, deadline: float | None, on_wait: Callable[[], None] | None) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        if deadline is not None or on_wait is not None:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ChannelTimeout()
                wait = 0.05 if remaining is None else min(0.05, remaining)
                ready, _, _ = select.select([sock], [], [], wait)
                if ready:
                    break
                if on_wait is not None:
                    on_wait()
        try:
            chunk = sock.recv(min(size - len(chunks), 1 << 20))
        except (ConnectionResetError, OSError):
            chunk = b""
        if not chunk:
            if not chunks:
                return None
            raise ChannelClosed("the channel closed in the middle of a frame")
        chunks += chunk
    return bytes(chunks)


def read_frame(sock: socket.socket, deadline: float | None, on_wait: Callable[[], None] | None = None):
    """Read one frame; None when the other side closed the channel cleanly between frames.

    `on_wait` runs every 50 ms while waiting (the grading side checks the submission process's
    health and memory there and raises to stop waiting).
    """
    header = _read_exact(sock, HEADER.size, deadline, on_wait)
    if header is None:
        return None
    body_len, blob_len = HEADER.unpack(header)
    if body_len > MAX_JSON_BYTES or blob_len > MAX_BLOB_BYTES:
        raise CodecError(f"frame too large ({body_len} + {blob_len} bytes)")
    body = _read_exact(sock, body_len, deadline, on_wait) if body_len else b""
    blob = _read_exact(sock, blob_len, deadline, on_wait) if blob_len else b""
    if body is None or blob is None:
        raise ChannelClosed("the channel closed in the middle of a frame")
    return unpack_frame(body, blob)
