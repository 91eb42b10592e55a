"""The errors of the protocols floor (``protocols/``): what a peer sends that breaks a protocol.

One module per floor holds that floor's errors (:mod:`crdt.errors`, this one,
:mod:`gridnode.errors`), all in one tree under :class:`~crdt.errors.GridnodeError`.
"""

from __future__ import annotations

from crdt.errors import GridnodeError

__all__ = [
    "AgeError",
    "AgeHeaderError",
    "AgeHmacError",
    "AgeNoMatch",
    "AgePayloadError",
    "BitswapError",
    "OrbitHeadsError",
    "ProtocolError",
    "ReplicaStatementError",
    "SendLimitError",
]


class ProtocolError(GridnodeError, ValueError):
    """A peer broke the protocol: bad framing, an unknown or malformed message, an answer to a
    question never asked, or a budget overrun. The connection is closed."""


class BitswapError(ProtocolError):
    """A bitswap message that breaks the protocol: bad protobuf, a bad CID or prefix, a block
    over the limit. The peer is struck; the connection stays up until strikes add up."""


class OrbitHeadsError(ProtocolError):
    """An OrbitDB heads stream (:mod:`protocols.orbitdb`) that does not split into whole head
    blocks, or brings more of them (or more bytes) than gridnode reads from one stream. The
    stream is reset and the peer struck."""


class SendLimitError(ProtocolError):
    """This node was about to send a message its peer must refuse (more heads, CIDs, ranges or
    blocks than the message allows, or a frame over 4 MiB). Nothing is sent and the stream is
    closed; the fault is this node's, so callers catch it before :class:`ProtocolError` and strike
    no peer for it."""


class ReplicaStatementError(ProtocolError):
    """A replica statement (:mod:`protocols.replicas`) that is malformed, over its bounds, signed
    by another key than the peer it names, or sent by another peer than the one it names. It is
    dropped before gossipsub forwards it; the sender is not struck (gossip is a hint)."""


class AgeError(GridnodeError, ValueError):
    """An age file, recipient or identity that cannot be used (:mod:`protocols.age`). The
    children say which step failed, so a caller can tell a wrong key from a damaged file."""


class AgeHeaderError(AgeError):
    """The file is not an age v1 file, or its header is malformed (the age spec is strict)."""


class AgeNoMatch(AgeError):
    """The header is well formed but none of the identities given unwraps its file key."""


class AgeHmacError(AgeError):
    """An identity unwrapped the file key but the header's MAC does not match: it was altered."""


class AgePayloadError(AgeError):
    """The payload is damaged: a chunk fails its tag, or the file is truncated or has trailing
    data. Plaintext released before the error is from verified chunks, but the file is
    incomplete."""
