"""The local API's plumbing: ASGI messages in, a :class:`Request` to a handler, a
:class:`Response` out.

:class:`ApiApp` is the ASGI app hypercorn serves (:mod:`gridnode.api.server`). For each HTTP
request it:

- **checks the token** before it routes: every route but the public ones
  (:data:`gridnode.api.routes.PUBLIC`) needs ``Authorization: Bearer <token>``, compared in
  constant time, so a request without it learns nothing, not even whether its path exists (401);
- **parses the path and the query strictly**: percent-escapes that are not UTF-8, and a parameter
  given twice, are refused (400) rather than guessed at;
- **dispatches** through :func:`gridnode.api.routes.route` (404 for no such path, 405 with
  ``Allow`` for a method the path does not have) and answers a gridnode error with its status
  (:mod:`gridnode.api.errors`); anything else is a bug: 500, logged with its traceback;
- **bounds what it reads**: a JSON body at most :data:`MAX_JSON_BYTES`, a CAR at most
  :data:`MAX_CAR_BYTES` (413 beyond; the announced length is checked before a byte is read);
- **reads the rest of the body before answering** (:meth:`_Body.drain`), and does not answer at
  all a client that went away mid-body: hypercorn has answered that one itself, and a second
  answer would race with it on the socket.

Before all that it **checks the Host header** (:meth:`ApiApp._host_allowed`): only its own
loopback address (``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT``) or a name in the config's
``gateway_hosts`` is answered; anything else gets 421, so a page on another site whose name was
re-pointed at 127.0.0.1 (DNS rebinding) cannot reach the API or the gateway.

Answers are sent whole parts at a time, about 64 KiB per message, with ``Cache-Control:
no-store`` unless the handler says otherwise (the gateway's immutable blocks do).

**Streamed answers** (:attr:`Response.stream`: whole-database CARs, the gateway's files and
UnixFS CARs) are read a chunk (:data:`CHUNK_BYTES`, a file's a batch of blocks) at a time, so a
request holds one chunk, not the answer. They are heavy: at most :data:`MAX_HEAVY` CARs and
:data:`MAX_FILE_STREAMS` files (:attr:`Response.pool`) run at once; another waits up to
:data:`HEAVY_WAIT` seconds, then gets 503 with ``Retry-After``. A file's length is known before
it is read (:attr:`Response.length`): it is sent with ``Content-Length``, the others chunked. The first chunk is read before the answer starts, so an error
there (a damaged block) is an ordinary error answer; an error in a later chunk aborts the answer:
the connection closes before the chunked body ends, and the client sees a broken transfer, never
a damaged block. A client that takes nothing for :data:`STALL_SECONDS` loses its slot to the next
request: hypercorn shields its socket write from cancellation, so the answer stays parked in
that write (one chunk and the socket's buffers) until the client reads or leaves, and is then
cut off; at most :data:`MAX_STALLED` are parked, beyond that heavy requests get 503.

Refused here: knowing any endpoint. Which path runs what is :mod:`gridnode.api.routes`; what it
does is :mod:`gridnode.api.handlers`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, unquote

import trio

from crdt.errors import GridnodeError
from gridnode import jsonvalue
from gridnode.api.errors import ERROR_HEADER, error_body, status_of
from gridnode.errors import (
    InvalidRequest,
    NotFound,
    RequestTooLarge,
    StorageLimitReached,
    TokenRefused,
)
from gridnode.ops import describe_error

if TYPE_CHECKING:
    from gridnode.node import Node

__all__ = ["MAX_CAR_BYTES", "MAX_JSON_BYTES", "ApiApp", "Handler", "Request", "Response"]

log = logging.getLogger(__name__)

#: The largest JSON request body the API reads.
MAX_JSON_BYTES: Final = 64 * 1024 * 1024
#: The largest CAR ``POST /import`` reads (it is held in memory); import larger ones offline.
MAX_CAR_BYTES: Final = 256 * 1024 * 1024
#: Bytes a streamed answer reads from storage per worker call (and holds at a time).
CHUNK_BYTES: Final = 4 * 1024 * 1024
#: Streamed (heavy) answers running at once; more wait, then get 503.
MAX_HEAVY: Final = 2
#: Streamed files from the gateway (:mod:`gridnode.api.unixfs`) running at once; more wait, then
#: get 503. Each holds at most one batch of blocks (:data:`gridnode.api.unixfs.BATCH_BYTES`).
MAX_FILE_STREAMS: Final = 8
#: Seconds a heavy request waits for its turn before 503.
HEAVY_WAIT: Final = 2.0
#: Seconds a streamed answer waits for the client to take a chunk before its slot is freed.
STALL_SECONDS: Final = 30.0
#: Streamed answers whose client stopped reading, still parked in the server's send; past this
#: many, heavy requests get 503 at once (each holds a chunk and its socket's buffers).
MAX_STALLED: Final = 8
#: The Host names that are this API's own (with its port).
_LOOPBACK: Final = ("127.0.0.1", "localhost", "[::1]")


class _Disconnected(Exception):
    """The client went away before its request was whole: nobody to answer."""


class _Body:
    """The request body's messages, as the app reads them."""

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._receive = receive
        self.done = False

    async def receive(self) -> dict[str, Any]:
        if self.done:
            raise _Disconnected
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.done = True
            raise _Disconnected
        if not message.get("more_body", False):
            self.done = True
        return message

    async def drain(self) -> None:
        """Read and drop the rest of the body (up to :data:`MAX_CAR_BYTES`)."""
        size = 0
        while not self.done and size <= MAX_CAR_BYTES:
            size += len((await self.receive()).get("body", b""))


@dataclass
class Request:
    """One request, as a handler sees it: the path split into unquoted segments, the query
    (each parameter once), the headers (names in lower case) and the body, read on demand."""

    method: str
    segments: list[str]
    query: dict[str, str]
    headers: dict[bytes, bytes]
    stream: _Body
    #: Whether the path ended with ``/`` (a gateway directory is answered at its ``.../``).
    trailing_slash: bool = False

    async def body(self, limit: int | None = None) -> bytes:
        limit = MAX_JSON_BYTES if limit is None else limit
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"the request body is over {limit} bytes")
        chunks = []
        size = 0
        while True:
            message = await self.stream.receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(f"the request body is over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def json(self) -> Any:
        data = await self.body()
        if not data.strip():
            raise InvalidRequest("the request body is empty; it is JSON")
        return jsonvalue.parse(data, "the request body")

    def int_param(self, name: str) -> int | None:
        text = self.query.get(name)
        if text is None:
            return None
        # At most 2**63 - 1: a larger count means nothing here and breaks islice() and SQLite.
        if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) >= 2**63:
            raise InvalidRequest(f"{name} must be an integer from 0 to 2**63-1, not {text!r:.40}")
        return int(text)

    def flag(self, name: str, default: bool = False) -> bool:
        text = self.query.get(name)
        if text is None:
            return default
        if text in ("1", "true", "yes", ""):
            return True
        if text in ("0", "false", "no"):
            return False
        raise InvalidRequest(f"{name} must be true or false, not {text!r}")


@dataclass
class Response:
    """A handler's answer: ``body`` sent as JSON, or ``parts`` sent as they are."""

    status: int
    body: Any = None
    #: Raw parts to send instead of ``body`` as JSON.
    parts: list[bytes] | None = None
    content_type: str = "application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: A HEAD: the headers (and the length) of the answer, without its body.
    head: bool = False
    #: A streamed answer: each call gives the next parts (about :data:`CHUNK_BYTES`, one storage
    #: worker call), ``[]`` at the end. Sent without a length (chunked), under the heavy limit.
    stream: Callable[[], Awaitable[list[bytes]]] | None = None
    #: A streamed answer's length when known before it is read (a file from the gateway): sent
    #: as ``Content-Length`` instead of chunked.
    length: int | None = None
    #: Which bound a streamed answer counts against: ``"car"`` (:data:`MAX_HEAVY`) or
    #: ``"file"`` (:data:`MAX_FILE_STREAMS`).
    pool: str = "car"


#: A handler: the running node and the request in, the answer out.
Handler = Callable[["Node", Request], Awaitable[Response]]
#: Where a request goes (:func:`gridnode.api.routes.route`): its handler, or ``None`` and the
#: methods its path allows.
Router = Callable[[list[str], str], tuple[Handler | None, list[str]]]


class ApiApp:
    """The ASGI app of the local API, answering from a running :class:`~gridnode.node.Node`."""

    def __init__(self, node: Node, token: str) -> None:
        # The table names the handlers, which answer with this module's Response: it is looked
        # up when an app is made, not when this module is imported, so the imports have no cycle.
        from gridnode.api.routes import is_public, route

        self.node = node
        self._expected = b"Bearer " + token.encode("ascii")
        self._route: Router = route
        self._is_public: Callable[[list[str], str], bool] = is_public
        self._pools = {
            "car": (trio.Semaphore(MAX_HEAVY), MAX_HEAVY),
            "file": (trio.Semaphore(MAX_FILE_STREAMS), MAX_FILE_STREAMS),
        }
        self._stalled = 0
        config = getattr(getattr(node, "repo", None), "config", None)
        self._hosts = [h.lower() for h in getattr(config, "gateway_hosts", None) or []]

    def _host_allowed(self, scope: dict[str, Any]) -> bool:
        """Whether the request's Host names this API: its loopback address and port, or a
        configured ``gateway_hosts`` name (exact with a port, any port without one)."""
        host = b""
        for name, value in scope.get("headers", []):
            if bytes(name).lower() == b"host":
                host = bytes(value)
                break
        text = host.decode("latin-1").strip().lower()
        if not text:
            return False
        server = scope.get("server")
        if server and server[1] is not None and text in {f"{n}:{server[1]}" for n in _LOOPBACK}:
            return True
        bare = text.rsplit(":", 1)[0] if not text.endswith("]") else text
        return any(
            text == allowed or (":" not in allowed and bare == allowed) for allowed in self._hosts
        )

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "http":
            body = _Body(receive)
            if not self._host_allowed(scope):
                # Before the token, the path, anything: a page on another site reached this
                # loopback API by re-pointing its own name (DNS rebinding).
                log.debug("API: refused Host %r", dict(scope.get("headers", [])).get(b"host"))
                response = Response(421, {"error": "this API answers only its own address as Host"})
                try:
                    await body.drain()
                except _Disconnected:
                    return
                await _send(send, response)
                return
            try:
                response = await self._respond(scope, body)
                # Read what is left of the body before answering: a client that sent less than
                # it announced and went away has been answered by hypercorn itself, and a second
                # answer would race with that one on the socket. (Not for a body too large to
                # read: hypercorn closes the connection after that answer.)
                if response.status != 413:
                    await body.drain()
            except _Disconnected:
                return
            if response.stream is not None and not response.head:
                await self._stream(send, response, scope)
                return
            await _send(send, response)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _respond(self, scope: dict[str, Any], stream: _Body) -> Response:
        method = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        shown = raw_path.decode("latin-1")  # for the log: whatever bytes came
        try:
            headers = {bytes(k).lower(): bytes(v) for k, v in scope["headers"]}
            path = raw_path.decode("ascii").split("?", 1)[0]
            segments = [unquote(s, errors="strict") for s in path.strip("/").split("/") if s]
            if not self._is_public(segments, method) and not hmac.compare_digest(
                headers.get(b"authorization", b""), self._expected
            ):
                raise TokenRefused(
                    "a request needs the header 'Authorization: Bearer <token>' "
                    "with the token in DATA_DIR/api.token"
                )
            request = Request(method, segments, _query(scope), headers, stream, path.endswith("/"))
            handler, allowed = self._route(segments, method)
            if handler is None:
                if allowed:
                    return Response(
                        405,
                        {"error": f"{method} is not allowed here; allowed: {', '.join(allowed)}"},
                        headers=[(b"allow", ", ".join(allowed).encode())],
                    )
                raise NotFound(f"no endpoint {method} /{'/'.join(segments)}")
            response = await handler(self.node, request)
        except _Disconnected:
            raise
        except UnicodeError:
            response = Response(400, {"error": "the path or query is not valid UTF-8"})
        except GridnodeError as exc:
            response = Response(
                status_of(exc),
                error_body(exc),
                headers=[(ERROR_HEADER.encode("ascii"), type(exc).__name__.encode("ascii"))],
            )
            if isinstance(exc, TokenRefused):
                response.headers.append((b"www-authenticate", b"Bearer"))
            if response.status >= 500 and not isinstance(exc, StorageLimitReached):
                # Not the request's fault: the node's (a damaged block, a full disk). The
                # operator hears of it here; the client got the message. (The storage bound
                # is logged once when reached, by the quota, not once per refusal.)
                log.error("API %s %s: %s", method, shown, describe_error(exc))
        except Exception as exc:
            log.exception("API %s %s failed", method, shown)
            response = Response(500, {"error": f"internal error: {describe_error(exc)}"})
        log.debug("API %s %s -> %d", method, shown, response.status)
        return response

    async def _stream(
        self,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        response: Response,
        scope: dict[str, Any],
    ) -> None:
        """Send a streamed answer under the heavy limit (module docstring)."""
        assert response.stream is not None
        if self._stalled >= MAX_STALLED:
            await _send(send, _busy(f"{MAX_STALLED} clients stopped reading their answers"))
            return
        slot, bound = self._pools[response.pool]
        acquired = False
        with trio.move_on_after(HEAVY_WAIT):
            await slot.acquire()
            acquired = True
        if not acquired:
            await _send(send, _busy(f"{bound} heavy answers are running"))
            return
        watch = _Watch(slot)
        try:
            try:
                first = await response.stream()
            except GridnodeError as exc:
                status = status_of(exc)
                if status >= 500:
                    log.error("API %s: %s", scope.get("path"), describe_error(exc))
                await _send(
                    send,
                    Response(
                        status,
                        error_body(exc),
                        headers=[(ERROR_HEADER.encode("ascii"), type(exc).__name__.encode())],
                    ),
                )
                return
            headers = [(b"content-type", response.content_type.encode()), *response.headers]
            if response.length is not None:
                headers.insert(1, (b"content-length", str(response.length).encode()))
            if not any(name == b"cache-control" for name, _ in response.headers):
                headers.append((b"cache-control", b"no-store"))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch, watch, scope)
                try:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": response.status,
                            "headers": headers,
                        }
                    )
                    parts = first
                    while parts:
                        watch.deadline = trio.current_time() + STALL_SECONDS
                        # hypercorn shields its socket write: this returns when the client reads
                        # or goes away, whatever we cancel; the watch frees the slot meanwhile.
                        await send(
                            {
                                "type": "http.response.body",
                                "body": b"".join(parts),
                                "more_body": True,
                            }
                        )
                        if watch.stalled:
                            return  # unfinished: hypercorn closes the connection (module docstring)
                        parts = []  # the chunk sent is not held while the next is read
                        try:
                            parts = await response.stream()
                        except GridnodeError as exc:
                            log.error(
                                "API %s: aborted mid-answer: %s",
                                scope.get("path"),
                                describe_error(exc),
                            )
                            return  # the same: the client sees the transfer cut, never the block
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                finally:
                    nursery.cancel_scope.cancel()  # the watch ends with the answer
        finally:
            if watch.stalled:
                self._stalled -= 1
            watch.release()

    async def _watch(self, watch: _Watch, scope: dict[str, Any]) -> None:
        """Free the heavy slot of an answer whose client has taken nothing for
        :data:`STALL_SECONDS`, and count it among the stalled until its send returns."""
        while trio.current_time() < watch.deadline:
            await trio.sleep_until(watch.deadline)
        watch.stalled = True
        self._stalled += 1
        watch.release()
        log.info("API %s: the client took nothing for %ss", scope.get("path"), STALL_SECONDS)


class _Watch:
    """One streamed answer's heavy slot and stall deadline; the slot is released once."""

    def __init__(self, slot: trio.Semaphore) -> None:
        self._slot: trio.Semaphore | None = slot
        self.deadline = trio.current_time() + STALL_SECONDS
        self.stalled = False

    def release(self) -> None:
        if self._slot is not None:
            self._slot.release()
            self._slot = None


def _busy(why: str) -> Response:
    """503 for a heavy request that cannot start now."""
    return Response(503, {"error": f"busy: {why}; retry shortly"}, headers=[(b"retry-after", b"2")])


def _query(scope: dict[str, Any]) -> dict[str, str]:
    """The query string's parameters; one given twice is refused (which one would count?)."""
    query: dict[str, str] = {}
    for key, value in parse_qsl(
        scope.get("query_string", b"").decode("ascii"),
        keep_blank_values=True,
        strict_parsing=False,
        errors="strict",
    ):
        if key in query:
            raise InvalidRequest(f"parameter {key!r} is given twice")
        query[key] = value
    return query


async def _send(send: Callable[[dict[str, Any]], Awaitable[None]], response: Response) -> None:
    parts = response.parts
    if parts is None:
        parts = [jsonvalue.dumps(response.body).encode("utf-8") + b"\n"]
    length = sum(len(p) for p in parts) if response.length is None else response.length
    headers = [(b"content-type", response.content_type.encode()), *response.headers]
    if response.stream is None or response.length is not None:
        # (a streamed answer's length is not known before it is read, unless it is: a file's)
        headers.insert(1, (b"content-length", str(length).encode()))
    if not any(name == b"cache-control" for name, _ in response.headers):
        headers.append((b"cache-control", b"no-store"))
    if response.head:
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    # Whole parts, a few at a time: one message per 64 KiB or so, not one per CAR section.
    batch: list[bytes] = []
    size = 0
    for part in parts:
        batch.append(part)
        size += len(part)
        if size >= 65536:
            await send({"type": "http.response.body", "body": b"".join(batch), "more_body": True})
            batch, size = [], 0
    await send({"type": "http.response.body", "body": b"".join(batch), "more_body": False})
