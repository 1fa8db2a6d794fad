"""Worker-protocol frames over a network stream (TCP, or TLS over TCP), for both ends of a
remote worker's connection: a size cap on every frame read, one writer at a time, and the
socket options both ends want (no Nagle delay, keepalive)."""

from __future__ import annotations

import socket

import trio

from protocol import wire

KEEPALIVE_IDLE = 10  # seconds of silence before the kernel probes the peer
KEEPALIVE_INTERVAL = 5
KEEPALIVE_PROBES = 3
NETWORK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
"""What a read or write on a connection raises once the peer is gone (TLS errors are OSErrors)."""


def tune_socket(sock: trio.socket.SocketType) -> None:
    """TCP_NODELAY (a batch must not wait for Nagle's round trip) and keepalive probes, so a
    peer that vanished without a FIN is noticed in about half a minute."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                          ("TCP_KEEPCNT", KEEPALIVE_PROBES)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class FramedStream:
    """Frames in and out of `stream`; `receive` raises EOFError at a clean end and
    wire.ProtocolError for anything else that is not a frame (garbage, oversize, truncated)."""

    def __init__(self, stream: trio.abc.Stream, max_bytes: int) -> None:
        self.stream = stream
        self.parser = wire.FrameParser(max_bytes)
        self._sending = trio.Lock()

    async def receive(self) -> bytes:
        while (frame := self.parser.next_frame()) is None:
            chunk = await self.stream.receive_some(1 << 20)
            if not chunk:
                if self.parser.buffered:
                    raise wire.ProtocolError(f"connection closed inside a frame ({self.parser.buffered} bytes of it)")
                raise EOFError
            self.parser.feed(chunk)
        return frame

    async def send(self, frame: bytes) -> None:
        async with self._sending:
            await self.stream.send_all(frame)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await self.stream.aclose()
            except (*NETWORK_ERRORS, trio.TooSlowError):
                pass
