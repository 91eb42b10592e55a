"""The pure core of gridnode: IPLD, identities, entries and the Merkle-CRDT log.

Nothing in this package does I/O, reads a clock or draws randomness: the same inputs give the
same outputs on every replica.
"""

from crdt.errors import GridnodeError

__all__ = ["GridnodeError"]
