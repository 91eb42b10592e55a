"""The file store's operations, written once: what ``gridnode add|cat|get|ls|gc|pin`` ask of a
data directory, run directly on a :class:`~gridnode.repo.Repo` when no node runs
(:class:`~gridnode.ops.RepoEndpoint`) and by the node's API handlers in its storage worker when
one does (``/files/...``, :mod:`gridnode.api.handlers`). Both answer the same plain values.

Adding stops at ``max_storage``: :func:`put` checks the bound before each batch (the bound is
passed by at most one batch, :data:`gridnode.files.add.BATCH_BYTES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crdt.ipld.cid import CID
from gridnode.errors import InvalidRequest, MissingBlock
from gridnode.repo import Repo

__all__ = ["begin", "block", "end", "gc", "pin", "pins", "put", "unpin", "usage"]


def put(
    repo: Repo, blocks: Sequence[tuple[CID, bytes]], lease: int | None, *, verified: bool = False
) -> dict[str, Any]:
    """Keep a batch of blocks of an add (``lease``: :func:`begin`'s); refused at the bound.
    ``verified``: every block was hashed against its CID already (not hashed twice)."""
    repo.quota.check("add a file")
    new = repo.files.put_blocks(blocks, lease=lease, verified=verified)
    return {"blocks": len(blocks), "new": new}


def begin(repo: Repo) -> dict[str, Any]:
    """A lease for an add: its blocks stay safe from gc until it ends or expires."""
    return {"lease": repo.files.begin()}


def end(repo: Repo, lease: int) -> dict[str, Any]:
    repo.files.end(lease)
    return {"lease": lease, "ended": True}


def block(repo: Repo, cid: CID) -> bytes:
    """The block of ``cid`` from the file store, re-hashed; :class:`MissingBlock` if absent."""
    found = repo.files.get(cid)
    if found is None:
        raise MissingBlock(f"block {cid} is not in the file store")
    return found


def pin(repo: Repo, cid: CID, name: str | None, recursive: bool) -> dict[str, Any]:
    return repo.files.pin(cid, name, recursive).as_json()


def unpin(repo: Repo, name_or_cid: str) -> dict[str, Any]:
    return {"pin": name_or_cid, "removed": repo.files.unpin(name_or_cid)}


def pins(repo: Repo) -> list[dict[str, Any]]:
    return [p.as_json() for p in repo.files.pins()]


def gc(repo: Repo) -> dict[str, Any]:
    report = repo.files.gc()
    return {
        "removed_blocks": report.blocks,
        "removed_bytes": report.bytes,
        "kept_blocks": report.kept_blocks,
        "kept_bytes": report.kept_bytes,
        "orphan_files": report.orphan_files,
        "interrupted": report.interrupted,
    }


def usage(repo: Repo) -> dict[str, Any]:
    blocks, size = repo.files.usage()
    return {"blocks": blocks, "bytes": size, "pins": len(repo.files.pins())}


def parse_cid(text: Any) -> CID:
    """A CID from a request (text); :class:`InvalidRequest` if it is not one."""
    if not isinstance(text, str):
        raise InvalidRequest("a CID is given as text")
    try:
        return CID.parse(text)
    except Exception as exc:  # InvalidCID and the codecs' errors
        raise InvalidRequest(f"not a CID: {text!r} ({exc})") from None
