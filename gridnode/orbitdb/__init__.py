"""OrbitDB 4 databases a gridnode follows and serves, read-only (issue 25).

:mod:`gridnode.orbitdb.follow` (``node.orbitdb``) joins each followed database's gossipsub topic
and heads protocol, fetches its manifest, access controller, identities and log over bitswap,
verifies every block with :mod:`crdt.orbitdb`, keeps what verifies in the node's SQLite file
(:mod:`gridnode.storage.orbitdb`, served back over bitswap) and materialises it with OrbitDB's
own semantics for ``db get/query/iter``, the API and the catalogs. Its rooms:
:mod:`gridnode.orbitdb.ingest` (fetch, verify, keep what heads reach) and
:mod:`gridnode.orbitdb.state` (what is kept in memory per database, and the counters).
"""

from __future__ import annotations

from gridnode.orbitdb.follow import OrbitFollower, OrbitStats

__all__ = ["OrbitFollower", "OrbitStats"]
