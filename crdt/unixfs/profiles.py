"""UnixFS import profiles: the parameters that decide a file's or a directory's CID (IPIP-499).

Two named profiles, as IPIP-499 ratifies them and Kubo's ``ipfs add --profile`` names them:

=========================  ======================  ======================
parameter                  ``unixfs-v1-2025``      ``unixfs-v0-2015``
=========================  ======================  ======================
CID version                1                       0
hash                       sha2-256                sha2-256
chunker                    fixed 1 MiB             fixed 256 KiB
layout                     balanced                balanced
links per file node        1024                    174
leaves                     raw                     dag-pb (UnixFS File)
HAMT fanout                256                     256
HAMT threshold             256 KiB, block-bytes    256 KiB, links-bytes
HAMT switch                size > threshold        size > threshold
=========================  ======================  ======================

``block-bytes`` is the length of the basic directory's dag-pb block; ``links-bytes`` the sum over
its links of the name's UTF-8 length plus the binary CID's length. Either way a directory whose
estimate is at most the threshold stays one node. Empty directories are kept; hidden files,
symlinks, mode and mtime are the caller's choice (nothing here adds mode or mtime, as Kubo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from crdt.errors import UnknownProfile

__all__ = ["DEFAULT_PROFILE", "PROFILES", "Profile", "get_profile"]

HamtEstimate = Literal["block-bytes", "links-bytes"]


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    cid_version: int
    raw_leaves: bool
    chunk_size: int
    max_links: int
    hamt_threshold: int = 256 * 1024
    hamt_estimate: HamtEstimate = "block-bytes"
    hamt_fanout: int = 256
    hash: str = "sha2-256"
    layout: str = "balanced"

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ValueError("cid_version is 0 or 1")
        if self.cid_version == 0 and self.raw_leaves:
            raise ValueError("raw leaves need CIDv1")
        if self.chunk_size < 1 or self.max_links < 2:
            raise ValueError("chunk_size must be >= 1 and max_links >= 2")
        if self.hash != "sha2-256" or self.layout != "balanced":
            raise ValueError("only sha2-256 and the balanced layout are implemented")


PROFILES: Final[dict[str, Profile]] = {
    "unixfs-v1-2025": Profile(
        name="unixfs-v1-2025",
        cid_version=1,
        raw_leaves=True,
        chunk_size=1024 * 1024,
        max_links=1024,
        hamt_estimate="block-bytes",
    ),
    "unixfs-v0-2015": Profile(
        name="unixfs-v0-2015",
        cid_version=0,
        raw_leaves=False,
        chunk_size=256 * 1024,
        max_links=174,
        hamt_estimate="links-bytes",
    ),
}

DEFAULT_PROFILE: Final = "unixfs-v1-2025"


def get_profile(profile: Profile | str | None = None) -> Profile:
    """A profile by name (``None``: the default); a :class:`Profile` is returned as is.
    An unknown name raises :class:`UnknownProfile` listing the known ones."""
    if profile is None:
        return PROFILES[DEFAULT_PROFILE]
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise UnknownProfile(
            f"unknown UnixFS profile {profile!r}; known: {', '.join(PROFILES)}"
        ) from None
