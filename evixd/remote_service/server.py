"""`evix worker --listen`'s TCP service: listen (IPv4 or IPv6), accept within the connection
cap, TLS when configured, then one Relay per connection. Whatever one connection does
(garbage, a truncated or oversize frame, a wrong token, TLS on a plain port or the reverse),
it is closed with a line in the log and the others go on."""

from __future__ import annotations

import logging
import ssl

import trio

from evixd.engine.framed_stream import NETWORK_ERRORS, FramedStream, tune_socket
from protocol import remote_wire as rw

from .relay import ConnectionEnds, Relay, ServiceSettings

log = logging.getLogger("evix.remote")


def server_tls(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class WorkerService:
    def __init__(self, settings: ServiceSettings, *, tls: ssl.SSLContext | None, max_connections: int) -> None:
        self.settings = settings
        self.tls = tls
        self.max_connections = max_connections
        self.connections = 0

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host or None)
        addresses = [_name(listener.socket.getsockname()) for listener in listeners]
        for address in addresses:
            log.warning("listening on %s%s%s", address, " (TLS)" if self.tls else "",
                        "" if self.settings.token is not None else " WITHOUT A TOKEN: any peer may evaluate here")
        task_status.started(addresses)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept, listener, nursery)

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                stream = await listener.accept()
                peer = _name(stream.socket.getpeername())
                if self.connections >= self.max_connections:
                    log.warning("%s: connection limit of %d reached; connection closed", peer, self.max_connections)
                    nursery.start_soon(self._turn_away, stream)
                    continue
                self.connections += 1
                nursery.start_soon(self._connection, stream, peer)

    async def _turn_away(self, stream: trio.SocketStream) -> None:
        conn = FramedStream(stream, rw.MAX_REMOTE_FRAME_BYTES)
        with trio.move_on_after(1):
            try:
                await conn.send(rw.encode_response(rw.Refused(
                    f"{rw.BUSY}this worker serves at most {self.max_connections} connections")))
            except NETWORK_ERRORS:
                pass
        await conn.aclose()

    async def _connection(self, stream: trio.SocketStream, peer: str) -> None:
        try:
            tune_socket(stream.socket)
            transport: trio.abc.Stream = stream
            if self.tls is not None:
                transport = trio.SSLStream(stream, self.tls, server_side=True)
                with trio.fail_after(self.settings.handshake_timeout):
                    await transport.do_handshake()
            conn = FramedStream(transport, rw.MAX_REMOTE_FRAME_BYTES)
            try:
                await Relay(conn, self.settings, peer).run()
            finally:
                await conn.aclose()
        except BaseException as e:
            if _stops_us(e):
                raise
            _log_end(peer, e, self.settings.handshake_timeout)
            with trio.CancelScope(shield=True):
                await stream.aclose()
        finally:
            self.connections -= 1


def _stops_us(error: BaseException) -> bool:
    """Cancellation and Ctrl-C end the service, not only this connection."""
    kinds = (trio.Cancelled, KeyboardInterrupt, SystemExit)
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(kinds) is not None
    return isinstance(error, kinds)


def _log_end(peer: str, error: BaseException, handshake_timeout: float) -> None:
    """One line for how a connection ended badly; a traceback only for a bug of ours."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    if isinstance(error, ConnectionEnds):
        if error.reason:
            log.warning("%s: %s; connection closed", peer, error.reason)
    elif isinstance(error, trio.TooSlowError):
        log.warning("%s: no handshake within %g s; connection closed", peer, handshake_timeout)
    elif isinstance(error, NETWORK_ERRORS):
        log.warning("%s: %s; connection closed", peer, _describe(error))
    else:
        log.error("%s: internal error; connection closed", peer, exc_info=error)


def _describe(error: BaseException) -> str:
    if isinstance(error, trio.BrokenResourceError) and error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error}): is the master speaking plain TCP to this TLS port?"
    return str(error) or type(error).__name__


def _name(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
