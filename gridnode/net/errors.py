"""Errors of the network layer, in gridnode's one exception tree."""

from __future__ import annotations

from crdt.errors import GridnodeError

__all__ = ["DialError", "NetError", "ProtocolNotSupported", "StreamError"]


class NetError(GridnodeError):
    """A network operation that failed: a peer that cannot be reached, a stream that broke."""


class DialError(NetError):
    """No connection to the peer: bad address, nobody listening, wrong peer id, refused handshake."""


class StreamError(NetError):
    """A stream could not be opened, or broke (was reset) while in use."""


class ProtocolNotSupported(StreamError):
    """The peer is connected but does not speak the requested stream protocol."""
