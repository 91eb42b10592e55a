"""Errors of the network layer, in gridnode's one exception tree."""

from __future__ import annotations

from crdt.errors import GridnodeError

__all__ = ["DialError", "NetError", "ProtocolNotSupported", "StreamError", "single_exception"]


class NetError(GridnodeError):
    """A network operation that failed: a peer that cannot be reached, a stream that broke."""


class DialError(NetError):
    """No connection to the peer: bad address, nobody listening, wrong peer id, refused handshake."""


class StreamError(NetError):
    """A stream could not be opened, or broke (was reset) while in use."""


class ProtocolNotSupported(StreamError):
    """The peer is connected but does not speak the requested stream protocol."""


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
