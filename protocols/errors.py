"""The errors of the protocols floor (``protocols/``): what a peer sends that breaks a protocol.

One module per floor holds that floor's errors (:mod:`crdt.errors`, this one,
:mod:`gridnode.errors`), all in one tree under :class:`~crdt.errors.GridnodeError`.
"""

from __future__ import annotations

from crdt.errors import GridnodeError

__all__ = ["BitswapError", "ProtocolError"]


class ProtocolError(GridnodeError, ValueError):
    """A peer broke the protocol: bad framing, an unknown or malformed message, an answer to a
    question never asked, or a budget overrun. The connection is closed."""


class BitswapError(ProtocolError):
    """A bitswap message that breaks the protocol: bad protobuf, a bad CID or prefix, a block
    over the limit. The peer is struck; the connection stays up until strikes add up."""
