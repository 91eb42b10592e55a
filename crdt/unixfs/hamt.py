"""UnixFS HAMT directories: the name hash, the bucket of a name at each level, shards built and read.

A directory too large for one dag-pb node is a hash array mapped trie of ``HAMTShard`` nodes. The
rules, as go-unixfs/boxo and js-ipfs-unixfs write and read them:

- **Hash.** MurmurHash3 x64 128-bit, seed 0, of the name's UTF-8 bytes; of its two 64-bit halves
  only the first (``h1``) is kept, written big-endian: 8 bytes (``hashType`` 0x22, murmur3-x64-64).
- **Buckets.** A shard of fanout ``2**b`` takes the next ``b`` bits of that hash, most significant
  first, where its parent shard stopped: the root reads bits 0..b-1, its child shards b..2b-1, and
  so on. 64 bits give at most 64 // b levels (8 at fanout 256); past them go refuses ("sharded
  directory too deep") and so does this module (:class:`HamtTooDeep`).
- **Links.** One link per used bucket, in bucket order. Its name starts with the bucket index in
  upper-case hexadecimal, zero-padded to the width of ``fanout - 1`` (two digits at 256): followed
  by the entry's name for an entry, alone for a child shard.
- **Bitfield.** The shard's ``Data`` field holds a big-endian integer whose bit ``i`` is set when
  bucket ``i`` holds a link, without leading zero bytes (go-bitfield's ``Bytes``).
- **Canonical form.** A bucket that one entry maps to holds that entry; a bucket two or more map to
  holds a child shard with them. Go keeps this form whatever the order of insertions and removals,
  so the same names and links give the same root CID in go, js and here.
- **Sizes.** A link's Tsize is the entry's own Tsize, or for a child shard the length of its block
  plus the Tsizes of its links.

Reading refuses any shard whose parts disagree (:class:`InvalidHamt`): a bitfield naming other
buckets than the links, links out of order, a name that is not a valid prefix, an entry in a
bucket its name does not hash to. A reader that trusted the bitfield (go) and one that trusted the
link names (js) would otherwise see different directories in the same block.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from crdt.errors import DuplicateHamtName, HamtTooDeep, InvalidHamt
from crdt.ipld.cid import CID

__all__ = [
    "DEFAULT_FANOUT",
    "HASH_BITS",
    "MAX_FANOUT",
    "MURMUR3_X64_64",
    "EncodeShard",
    "HamtBuild",
    "HamtChild",
    "HamtEntry",
    "Shard",
    "ShardLink",
    "bucket_index",
    "build_hamt",
    "decode_bitfield",
    "encode_bitfield",
    "fanout_bits",
    "link_prefix",
    "lookup_child",
    "murmur3_x64_128",
    "name_hash",
    "prefix_width",
    "read_shard",
]

#: The multicodec of the hash UnixFS HAMTs use: the first 64 bits of murmur3 x64 128.
MURMUR3_X64_64: Final = 0x22
#: The fanout go, js and both IPIP-499 profiles use.
DEFAULT_FANOUT: Final = 256
#: The widest shard go accepts (boxo's ``maximumHamtWidth``); a wider one is refused.
MAX_FANOUT: Final = 1024
#: The bits of the name hash, hence the depth bound: a path of shards consumes at most this many.
HASH_BITS: Final = 64

_MASK64: Final = (1 << 64) - 1
_C1: Final = 0x87C37B91114253D5
_C2: Final = 0x4CF5AD432745937F


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK64


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK64
    k ^= k >> 33
    return k


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """MurmurHash3 x64 128-bit of ``data``: its two 64-bit halves ``(h1, h2)`` as integers."""
    length = len(data)
    h1 = h2 = seed & _MASK64
    end = length - length % 16
    for pos in range(0, end, 16):
        k1 = int.from_bytes(data[pos : pos + 8], "little")
        k2 = int.from_bytes(data[pos + 8 : pos + 16], "little")
        k1 = (_rotl((k1 * _C1) & _MASK64, 31) * _C2) & _MASK64
        h1 ^= k1
        h1 = (_rotl(h1, 27) + h2) & _MASK64
        h1 = (h1 * 5 + 0x52DCE729) & _MASK64
        k2 = (_rotl((k2 * _C2) & _MASK64, 33) * _C1) & _MASK64
        h2 ^= k2
        h2 = (_rotl(h2, 31) + h1) & _MASK64
        h2 = (h2 * 5 + 0x38495AB5) & _MASK64
    rest = length - end
    if rest:
        tail = data[end:].ljust(16, b"\x00")
        if rest > 8:
            k2 = int.from_bytes(tail[8:16], "little")
            h2 ^= (_rotl((k2 * _C2) & _MASK64, 33) * _C1) & _MASK64
        k1 = int.from_bytes(tail[0:8], "little")
        h1 ^= (_rotl((k1 * _C1) & _MASK64, 31) * _C2) & _MASK64
    h1 ^= length
    h2 ^= length
    h1 = (h1 + h2) & _MASK64
    h2 = (h2 + h1) & _MASK64
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 = (h1 + h2) & _MASK64
    h2 = (h2 + h1) & _MASK64
    return h1, h2


def name_hash(name: str | bytes) -> bytes:
    """The 8-byte HAMT hash of a directory entry name (murmur3-x64-64, as go and js compute it)."""
    data = name.encode("utf-8") if isinstance(name, str) else name
    return murmur3_x64_128(data)[0].to_bytes(8, "big")


def fanout_bits(fanout: int) -> int:
    """The bits of the hash one shard of ``fanout`` consumes (log2); refuses an invalid fanout."""
    if isinstance(fanout, bool) or not isinstance(fanout, int):
        raise InvalidHamt(f"HAMT fanout {fanout!r} is not an integer")
    if fanout < 2 or fanout > MAX_FANOUT or fanout & (fanout - 1):
        raise InvalidHamt(f"HAMT fanout {fanout} is not a power of two between 2 and {MAX_FANOUT}")
    return fanout.bit_length() - 1


def bucket_index(hash_value: bytes, consumed: int, bits: int) -> int:
    """The ``bits`` bits of ``hash_value`` after the first ``consumed``, most significant first:
    the bucket a shard at that depth puts the name in. :class:`HamtTooDeep` past the hash's end."""
    total = len(hash_value) * 8
    if consumed < 0 or bits < 1 or consumed + bits > total:
        raise HamtTooDeep(
            f"HAMT too deep: bits {consumed}..{consumed + bits} of a {total}-bit hash"
        )
    value = int.from_bytes(hash_value, "big")
    return (value >> (total - consumed - bits)) & ((1 << bits) - 1)


def prefix_width(fanout: int) -> int:
    """How many hex digits a link name's bucket prefix has: those of ``fanout - 1``."""
    return len(f"{fanout - 1:X}")


def link_prefix(index: int, fanout: int) -> str:
    """The link name prefix of bucket ``index`` (``"0A"`` for 10 at fanout 256)."""
    return _prefixes(fanout)[index]


@functools.cache
def _prefixes(fanout: int) -> tuple[str, ...]:
    width = prefix_width(fanout)
    return tuple(f"{index:0{width}X}" for index in range(fanout))


def encode_bitfield(indexes: Iterable[int]) -> bytes:
    """The shard ``Data`` bitfield of the used buckets: big-endian, no leading zero bytes."""
    value = 0
    for index in indexes:
        value |= 1 << index
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def decode_bitfield(data: bytes, fanout: int) -> tuple[int, ...]:
    """The used buckets a shard's bitfield names, ascending. Leading zero bytes are accepted (go
    reads them); a bitfield longer than the fanout needs or with a bit past it is refused."""
    if len(data) > (fanout + 7) // 8:
        raise InvalidHamt(f"HAMT bitfield of {len(data)} bytes for fanout {fanout}")
    value = int.from_bytes(data, "big")
    if value >> fanout:
        raise InvalidHamt(f"HAMT bitfield names a bucket past fanout {fanout}")
    out = []
    while value:
        lowest = value & -value
        out.append(lowest.bit_length() - 1)
        value ^= lowest
    return tuple(out)


# -- building -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HamtEntry:
    """One directory entry to put in a HAMT: its name, the CID it links to and that DAG's Tsize."""

    name: str
    cid: CID
    tsize: int


@dataclass(frozen=True, slots=True)
class ShardLink:
    """One link of a shard node as it is encoded: the full link name (prefix + entry name, or the
    prefix alone for a child shard), the target and its Tsize."""

    name: str
    cid: CID
    tsize: int


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard node's content, ready to encode as dag-pb: ``links`` in bucket order and the
    ``bitfield`` bytes for the UnixFS ``Data`` (type HAMTShard, hashType 0x22, this fanout).
    The bitfield is empty only in a HAMT of no entries, whose ``Data`` go leaves out."""

    fanout: int
    bitfield: bytes
    links: tuple[ShardLink, ...]


#: Turns a shard into its block and that block's CID (the caller picks CID version and hash).
EncodeShard = Callable[[Shard], tuple[CID, bytes]]


@dataclass(frozen=True, slots=True)
class HamtBuild:
    """A built HAMT: the root shard's CID, the Tsize of the whole directory DAG (every shard block
    plus the entries' Tsizes) and the shard blocks, children before their parents, root last."""

    cid: CID
    tsize: int
    blocks: tuple[tuple[CID, bytes], ...]


def build_hamt(
    entries: Iterable[HamtEntry],
    encode: EncodeShard,
    fanout: int = DEFAULT_FANOUT,
    emit: Callable[[CID, bytes], None] | None = None,
) -> HamtBuild:
    """Shard ``entries`` into a HAMT in canonical form (the one go builds whatever the insertion
    order). :class:`DuplicateHamtName` for a name given twice; :class:`HamtTooDeep` if two names
    share the whole 64-bit hash (go refuses those too).

    With ``emit``, each shard block is handed to it as soon as it is made (children first) and
    not kept: :attr:`HamtBuild.blocks` is then empty, and memory holds only the entries."""
    bits = fanout_bits(fanout)
    hashed: list[tuple[int, HamtEntry]] = []
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise DuplicateHamtName(f"directory entry name {entry.name!r} given twice")
        seen.add(entry.name)
        hashed.append((int.from_bytes(name_hash(entry.name), "big"), entry))
    blocks: list[tuple[CID, bytes]] = []
    cid, tsize = _build_shard(hashed, 0, bits, fanout, encode, emit or _keep(blocks))
    return HamtBuild(cid, tsize, tuple(blocks))


def _keep(blocks: list[tuple[CID, bytes]]) -> Callable[[CID, bytes], None]:
    def keep(cid: CID, block: bytes) -> None:
        blocks.append((cid, block))

    return keep


def _build_shard(
    hashed: list[tuple[int, HamtEntry]],
    consumed: int,
    bits: int,
    fanout: int,
    encode: EncodeShard,
    emit: Callable[[CID, bytes], None],
) -> tuple[CID, int]:
    if consumed + bits > HASH_BITS:
        raise HamtTooDeep(
            f"HAMT too deep: names {sorted(e.name for _, e in hashed)[:2]} share {consumed} hash bits"
        )
    shift = HASH_BITS - consumed - bits
    mask = fanout - 1
    buckets: dict[int, list[tuple[int, HamtEntry]]] = {}
    for item in hashed:
        buckets.setdefault((item[0] >> shift) & mask, []).append(item)
    links: list[ShardLink] = []
    for index in sorted(buckets):
        group = buckets[index]
        prefix = link_prefix(index, fanout)
        if len(group) == 1:
            entry = group[0][1]
            links.append(ShardLink(prefix + entry.name, entry.cid, entry.tsize))
        else:
            child, child_tsize = _build_shard(group, consumed + bits, bits, fanout, encode, emit)
            links.append(ShardLink(prefix, child, child_tsize))
    shard = Shard(fanout, encode_bitfield(buckets), tuple(links))
    cid, block = encode(shard)
    emit(cid, block)
    return cid, len(block) + sum(link.tsize for link in links)


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HamtChild:
    """One link of a read shard: its bucket, the entry name (``None`` for a child shard), the
    target and the link's Tsize (``None`` when the link carries none)."""

    index: int
    name: str | None
    cid: CID
    tsize: int | None


def read_shard(
    links: Sequence[tuple[str | None, CID, int | None]],
    bitfield: bytes,
    fanout: int,
    consumed: int | None = None,
) -> tuple[HamtChild, ...]:
    """Check a shard node's links (``(name, cid, tsize)`` in the node's order) against its bitfield
    and fanout, and return them as :class:`HamtChild` in bucket order.

    With ``consumed`` (the hash bits the shards above this one took: 0 for the root) each entry's
    name must also hash to its bucket, which makes a listing's names unique across the whole HAMT
    and a lookup's answer the same as a listing's. :class:`InvalidHamt` when anything disagrees.
    """
    bits = fanout_bits(fanout)
    if consumed is not None and consumed + bits > HASH_BITS:
        raise HamtTooDeep(f"HAMT shard below {consumed} hash bits: deeper than the hash allows")
    used = decode_bitfield(bitfield, fanout)
    if len(used) != len(links):
        raise InvalidHamt(f"HAMT shard has {len(links)} links but its bitfield names {len(used)}")
    width = prefix_width(fanout)
    prefixes = _prefixes(fanout)
    out = []
    for position, (index, (name, cid, tsize)) in enumerate(zip(used, links, strict=True)):
        prefix = prefixes[index]
        if name is None or not name.startswith(prefix):
            raise InvalidHamt(
                f"HAMT link {position} is named {name!r}; bucket {index} needs prefix {prefix!r}"
            )
        entry = name[width:] or None
        if entry is not None and consumed is not None:
            if bucket_index(name_hash(entry), consumed, bits) != index:
                raise InvalidHamt(f"HAMT entry {entry!r} is in bucket {index}, not its own")
        elif entry is None and consumed is not None and consumed + 2 * bits > HASH_BITS:
            raise HamtTooDeep(f"HAMT child shard below {consumed + bits} hash bits")
        out.append(HamtChild(index, entry, cid, tsize))
    return tuple(out)


def lookup_child(
    children: Sequence[HamtChild], name: str, fanout: int, consumed: int
) -> HamtChild | None:
    """Where ``name`` is in a shard read by :func:`read_shard` at depth ``consumed``: the entry's
    link, the child shard to read next (``name`` is ``None``; it reads at ``consumed`` plus this
    fanout's bits), or ``None`` when the directory has no such name."""
    index = bucket_index(name_hash(name), consumed, fanout_bits(fanout))
    lo, hi = 0, len(children)
    while lo < hi:
        mid = (lo + hi) // 2
        if children[mid].index < index:
            lo = mid + 1
        else:
            hi = mid
    if lo == len(children) or children[lo].index != index:
        return None
    child = children[lo]
    if child.name is None or child.name == name:
        return child
    return None
