"""A libp2p stream as gridnode uses it: bytes in, bytes out, EOF as ``b""``."""

from __future__ import annotations

from typing import Any

from libp2p.network.stream.exceptions import StreamEOF
from libp2p.network.stream.exceptions import StreamError as Libp2pStreamError

from gridnode.errors import StreamError
from gridnode.net.transports import quic_rest

__all__ = ["Stream", "single_exception"]


class Stream:
    """One multiplexed, encrypted byte stream to a peer, speaking one protocol.

    Reads return at most ``max_bytes`` as soon as any data is there, and ``b""`` once the peer
    has closed its side (and only then: a reset by either side, or a connection that broke,
    raises :class:`~gridnode.errors.StreamError`, so a cut-off message is never mistaken for
    a complete one).
    """

    __slots__ = ("_stream", "protocol", "remote_peer_id")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        #: The base58 peer id at the other end (authenticated by the Noise handshake).
        self.remote_peer_id: str = str(stream.muxed_conn.peer_id)
        #: The protocol id negotiated for this stream.
        self.protocol: str = str(stream.get_protocol())

    def __repr__(self) -> str:
        return f"<Stream {self.protocol} with {self.remote_peer_id}>"

    async def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` at end of stream."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        try:
            data: bytes = await self._stream.read(max_bytes)
        except StreamEOF:
            rest = quic_rest(self._stream, max_bytes)
            if rest is not None:
                return rest
            # py-libp2p's yamux reports a reset by the peer, and a connection that died, as a
            # plain EOF; only a FIN is the end of the data.
            if getattr(self._stream.muxed_stream, "reset_received", False):
                raise StreamError(
                    f"stream {self.protocol} with {self.remote_peer_id} was reset"
                ) from None
            return b""
        except Libp2pStreamError as exc:
            rest = quic_rest(self._stream, max_bytes)
            if rest is not None:
                # py-libp2p's QUIC stream reads as "closed" once both halves are closed, even
                # after a clean FIN, and may leave data behind (gridnode.net.transports).
                return rest
            raise StreamError(
                f"stream {self.protocol} with {self.remote_peer_id}: {exc!r}"
            ) from exc
        return data

    async def write(self, data: bytes) -> None:
        """Send ``data`` (waits while the peer's receive window is full)."""
        try:
            await self._stream.write(data)
        except Libp2pStreamError as exc:
            raise StreamError(
                f"stream {self.protocol} with {self.remote_peer_id}: {exc!r}"
            ) from exc

    async def close_write(self) -> None:
        """Half-close: tell the peer we will write no more; reading goes on until its EOF."""
        try:
            await self._stream.close_write()
        except Libp2pStreamError as exc:
            raise StreamError(
                f"stream {self.protocol} with {self.remote_peer_id}: {exc!r}"
            ) from exc

    async def close(self) -> None:
        """Close our side and release the stream (idempotent; never raises for a dead stream)."""
        try:
            await self._stream.close()
        except Libp2pStreamError:
            await self.reset()

    async def reset(self) -> None:
        """Abort the stream in both directions (idempotent)."""
        await self._stream.reset()


def single_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside (nested) single-member groups, or None if there are several.

    trio's nurseries (and py-libp2p's) wrap even a lone failure in groups; callers that handle
    the failure itself unwrap it with this."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc
