"""JSON-RPC 2.0 routing: one received line in, the bytes to answer (or None) out.

Parse errors, invalid requests, unknown methods and bad params get their standard codes;
a batch answers per member (and not at all if every member is a notification); a
notification is never answered, even when it fails. An unexpected exception is logged
here with its traceback and reaches the client only as "internal error".

jsonrpcserver is not used for dispatch: its async dispatcher runs on asyncio (under trio
it answers -32000 to everything), and it rejects a whole batch for one bad member.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from typing import Any, Protocol

import trio

from protocol import framing, rpc

from .handlers import CallContext, Handlers

log = logging.getLogger("evix.daemon")


class Peer(Protocol):
    """The connection as routing sees it."""

    stopping: bool

    async def send(self, message: bytes) -> bool: ...

    def request_scope(self, notification: bool = False) -> AbstractContextManager[trio.CancelScope]: ...


class Router:
    """Decodes requests, calls Handlers, encodes responses."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers

    async def handle_line(self, line: bytes, peer: Peer) -> bytes | None:
        """The response message for one line (a request or a batch), None when none is due."""
        try:
            message = framing.decode(line)
        except framing.FrameDecodeError as e:
            return rpc.failure(None, rpc.ParseError(f"Parse error: {e}"))
        if isinstance(message, list):
            if not message:
                return rpc.failure(None, rpc.InvalidRequestError("empty batch"))
            answers = [a for a in [await self._one(m, peer) for m in message] if a is not None]
            return b"[" + b",".join(answers) + b"]" if answers else None
        return await self._one(message, peer)

    async def _one(self, message: Any, peer: Peer) -> bytes | None:
        try:
            call = rpc.parse_call(message)
        except rpc.InvalidRequestError as e:
            return rpc.failure(e.request_id, e)
        rid = None if call.is_notification else call.id
        started = time.perf_counter()
        try:
            params = rpc.decode_params(call.method, call.params)
            with peer.request_scope(call.is_notification) as scope:
                result = await self.handlers.call(call.method, params, CallContext(call.id, peer.send))
            if scope.cancelled_caught:
                if not peer.stopping:
                    return None  # the client is gone: nobody to answer
                raise rpc.ShuttingDownError("the daemon is shutting down; the request was cancelled")
        except rpc.RpcError as e:
            log.debug("%s -> error %d: %s", call.method, e.code, e.message)
            return None if call.is_notification else rpc.failure(rid, e)
        except Exception:
            log.exception("%s failed", call.method)
            return None if call.is_notification else rpc.failure(
                rid, rpc.InternalRpcError("internal error (details are in the daemon's log)")
            )
        log.debug("%s answered in %.1f ms", call.method, (time.perf_counter() - started) * 1000)
        return None if call.is_notification else rpc.success(rid, result)

