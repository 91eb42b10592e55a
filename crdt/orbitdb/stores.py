"""OrbitDB 4's databases as gridnode reads them: events, documents and keyvalue over a set of
verified entries, answering what @orbitdb/core 4.0.0's ``all()``, ``get()``, ``query()`` and
``iterator()`` answer, order included (``oplog/log.js``, ``oplog/clock.js``,
``oplog/conflict-resolution.js``, ``databases/*.js``).

**Order.** OrbitDB's ``log.traverse()`` starts from the heads and repeatedly yields the greatest
entry of its frontier under LastWriteWins: clock time, then clock id (a plain string comparison).
Because every entry OrbitDB writes has time = 1 + the highest time of its ``next`` entries (and
gridnode refuses others: :func:`crdt.orbitdb.verify.check_clock`), no entry outside the frontier
can be greater than the frontier's greatest, so the traversal is exactly the entries sorted by
(time, clock id) descending, and ``log.values()`` the same ascending. Entries equal on both (one
key writing concurrently at the same time, from two processes sharing a keystore) are ordered by
their hash here; OrbitDB orders those by where its traversal met them. Clock ids are hex, so
JavaScript's UTF-16 comparison and Python's agree.

**Answers.** Events: ``all()`` is every entry ascending as ``{hash, value}`` (``value`` is
``payload.value``; absent when the payload has none, as JavaScript's ``undefined`` disappears from
JSON). Documents and keyvalue: walking the traversal (newest first), the first ``PUT`` or ``DEL``
of a key decides it; ``all()`` lists the deciding ``PUT``\\ s oldest first, ``query()`` the
matching documents newest first. Like OrbitDB, "the same key" in ``all()``/``query()``/documents'
``get`` means the same *JavaScript property name* (``String(key)``: ``1`` and ``"1"`` are one key),
and a key that names a property every JavaScript object inherits (``toString``, ``constructor``,
``__proto__``, ...) is never listed: OrbitDB's ``keys[key]`` finds the inherited property. Keyvalue's
``get`` compares keys with ``===`` instead (so ``get('toString')`` answers).

Pure and incremental: :class:`Materialiser` keeps the entries sorted and, per key, the deciding
entry; adding an entry is O(log n) comparisons plus a list insertion.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Any, Final

from crdt.errors import InvalidQuery
from crdt.orbitdb.blocks import STORE_TYPES, OrbitEntry

__all__ = [
    "INHERITED_PROPERTIES",
    "Materialiser",
    "js_property_name",
    "log_order",
    "materialise",
]

#: The names every plain JavaScript object inherits from Object.prototype (Node 22): OrbitDB's
#: ``keys[key]`` is truthy for them before any write, so such keys are never listed.
INHERITED_PROPERTIES: Final = frozenset(
    {
        "constructor",
        "__defineGetter__",
        "__defineSetter__",
        "hasOwnProperty",
        "__lookupGetter__",
        "__lookupSetter__",
        "isPrototypeOf",
        "propertyIsEnumerable",
        "toString",
        "valueOf",
        "__proto__",
        "toLocaleString",
    }
)


class _Absent:
    """JavaScript's ``undefined``: a field the payload does not have."""

    def __repr__(self) -> str:
        return "undefined"


_ABSENT: Final = _Absent()


def _js_number(value: float) -> str:
    """``String(x)`` of a finite JavaScript number."""
    if value == 0:
        return "0"
    text = repr(value)  # the shortest round trip, as JavaScript's
    mantissa, _, exponent = text.partition("e")
    digits = mantissa.replace("-", "").replace(".", "").lstrip("0")
    point = mantissa.replace("-", "").find(".")
    if point < 0:
        point = len(mantissa.replace("-", ""))
    whole = mantissa.replace("-", "").split(".")[0].lstrip("0")
    # decimal exponent of the first significant digit, plus one (JavaScript's n)
    if whole:
        n = len(whole) + (int(exponent) if exponent else 0)
    else:
        fraction = mantissa.replace("-", "").split(".")[1]
        n = -(len(fraction) - len(fraction.lstrip("0"))) + (int(exponent) if exponent else 0)
    digits = digits.rstrip("0") or "0"
    sign = "-" if value < 0 else ""
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    body = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{body}e{'+' if e >= 0 else '-'}{abs(e)}"


def js_property_name(value: object) -> str:
    """JavaScript's ``String(value)`` for a decoded DAG-CBOR value: the property name OrbitDB's
    ``keys[key]`` uses."""
    if value is _ABSENT:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_property_name(v) for v in value)
    if isinstance(value, bytes):
        return ",".join(str(b) for b in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)  # a CID: its base32 text, as multiformats' CID.toString()


def _strict_identity(value: object) -> tuple[str, object] | None:
    """What JavaScript's ``===`` compares for a primitive; ``None`` for values that are never
    ``===`` to anything but themselves (objects, arrays, byte arrays, links)."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return None


def _operation(entry: OrbitEntry) -> tuple[object, object, object]:
    """``const { op, key, value } = entry.payload``, with ``_ABSENT`` for a missing field."""
    payload = entry.payload
    if not isinstance(payload, dict):
        return _ABSENT, _ABSENT, _ABSENT
    return (
        payload.get("op", _ABSENT),
        payload.get("key", _ABSENT),
        payload.get("value", _ABSENT),
    )


def log_order(entries: Iterable[OrbitEntry]) -> list[OrbitEntry]:
    """The entries as OrbitDB's ``log.values()`` lists them: oldest first (its ``iterator()`` and
    ``traverse()`` are the reverse)."""
    return sorted(entries, key=lambda e: e.sort_key)


def _with_value(fields: dict[str, Any], value: object) -> dict[str, Any]:
    if value is not _ABSENT:
        fields["value"] = value
    return fields


class Materialiser:
    """One OrbitDB database's state, built entry by entry. ``kind`` is the manifest's type
    (``events``, ``documents`` or ``keyvalue``); ``index_by`` is the documents' key field
    (OrbitDB's default ``_id``; replicas read the key from each entry's payload, so it names the
    field only for callers that build payloads).

    The answers (dicts with ``hash``/``key``/``value``, in OrbitDB's order) are those of
    OrbitDB's ``all()``, ``get()``, ``query()`` and ``iterator()`` for the same entries."""

    def __init__(self, kind: str, index_by: str = "_id") -> None:
        if kind not in STORE_TYPES:
            raise ValueError(f"unknown OrbitDB database type {kind!r}")
        self.kind = kind
        self.index_by = index_by
        self._sorted: list[tuple[int, str, str]] = []
        self._entries: dict[str, OrbitEntry] = {}
        self._named: set[str] = set()  # hashes some held entry names in next
        # The deciding PUT/DEL per JavaScript property name (all, query, documents' get) and
        # per ===-identity (keyvalue's get).
        self._by_name: dict[str, OrbitEntry] = {}
        self._by_identity: dict[tuple[str, object], OrbitEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, hash: object) -> bool:
        return hash in self._entries

    def entry(self, hash: str) -> OrbitEntry | None:
        """The held entry of that hash."""
        return self._entries.get(hash)

    def add(self, entry: OrbitEntry) -> bool:
        """Add one verified entry (False if already held). Entries may come in any order."""
        if entry.hash in self._entries:
            return False
        self._entries[entry.hash] = entry
        bisect.insort(self._sorted, entry.sort_key)
        self._named.update(entry.next)
        if self.kind != "events":
            op, key, _value = _operation(entry)
            if op in ("PUT", "DEL"):
                name = js_property_name(key)
                held = self._by_name.get(name)
                if held is None or held.sort_key < entry.sort_key:
                    self._by_name[name] = entry
                identity = _strict_identity(key)
                if identity is not None:
                    held = self._by_identity.get(identity)
                    if held is None or held.sort_key < entry.sort_key:
                        self._by_identity[identity] = entry
        return True

    # -- the log ---------------------------------------------------------------------------

    def values(self) -> list[OrbitEntry]:
        """Every entry, oldest first (``log.values()``)."""
        return [self._entries[h] for _t, _i, h in self._sorted]

    def traverse(self, roots: Iterable[OrbitEntry] | None = None) -> list[OrbitEntry]:
        """The held entries reachable from ``roots`` through ``next`` (roots included; all
        entries when ``roots`` is ``None``: the heads reach every one), newest first
        (``log.traverse(roots)``)."""
        if roots is None:
            return [self._entries[h] for _t, _i, h in reversed(self._sorted)]
        seen: set[str] = set()
        stack = [r.hash for r in roots]
        while stack:
            hash = stack.pop()
            if hash in seen or hash not in self._entries:
                continue
            seen.add(hash)
            stack.extend(self._entries[hash].next)
        return sorted((self._entries[h] for h in seen), key=lambda e: e.sort_key, reverse=True)

    def iterator(
        self,
        amount: int = -1,
        *,
        gt: str | None = None,
        gte: str | None = None,
        lt: str | None = None,
        lte: str | None = None,
    ) -> list[OrbitEntry]:
        """``log.iterator({amount, gt, gte, lt, lte})``, newest first, with OrbitDB's rules:
        ``lte``/``lt`` start from that entry / its ``next`` entries, so they list its causal past
        (not every older entry); ``gt``/``gte`` stop at that entry (excluded/included; all of the
        log if it is not held); with ``gt``/``gte``, ``amount`` keeps the entries nearest to it,
        and is ignored when ``lt``/``lte`` is given too. An ``amount`` of 0 lists nothing; one
        below -1 lists one entry (OrbitDB's counter stops after the first). Raises
        :class:`~crdt.errors.InvalidQuery` for an ``lt`` that names no held entry (OrbitDB
        throws a TypeError)."""
        if amount == 0:
            return []
        roots: list[OrbitEntry] | None = None
        if lt is not None:
            below = self._entries.get(lt)
            if below is None:
                raise InvalidQuery(f"lt names no entry of this log: {lt!r:.80}")
            roots = [self._entries[h] for h in below.next if h in self._entries]
        elif lte is not None:
            roots = [self._entries[lte]] if lte in self._entries else []
        end_hash = gt if gt is not None else gte
        end = self._entries.get(end_hash) if end_hash is not None else None
        limit = -1 if end is not None or amount == -1 else amount
        found = []
        for count, entry in enumerate(self.traverse(roots), start=1):
            if not (gt is not None and end is not None and entry.hash == end.hash):
                found.append(entry)
            if limit != -1 and count >= limit:
                break
            if end is not None and entry.hash == end.hash:
                break
        if end is not None and amount > 0 and lt is None and lte is None:
            found = found[-amount:]
        return found

    def heads(self) -> list[OrbitEntry]:
        """The entries no held entry names in ``next``, newest first (``log.heads()``)."""
        heads = [e for h, e in self._entries.items() if h not in self._named]
        return sorted(heads, key=lambda e: e.sort_key, reverse=True)

    # -- the databases ---------------------------------------------------------------------

    def events_iterator(
        self,
        amount: int = -1,
        *,
        gt: str | None = None,
        gte: str | None = None,
        lt: str | None = None,
        lte: str | None = None,
    ) -> list[dict[str, Any]]:
        """Events' ``iterator({amount, gt, gte, lt, lte})``: ``{hash, value}`` newest first
        (:meth:`iterator` gives the rules)."""
        entries = self.iterator(amount, gt=gt, gte=gte, lt=lt, lte=lte)
        return [_with_value({"hash": e.hash}, _operation(e)[2]) for e in entries]

    def events_all(self) -> list[dict[str, Any]]:
        """Events' ``all()``: every entry as ``{hash, value}``, oldest first."""
        return [_with_value({"hash": e.hash}, _operation(e)[2]) for e in self.values()]

    def _deciding_puts(self) -> list[OrbitEntry]:
        """The PUT that decides each listed key, oldest first."""
        puts = [
            e
            for name, e in self._by_name.items()
            if name not in INHERITED_PROPERTIES and _operation(e)[0] == "PUT"
        ]
        return sorted(puts, key=lambda e: e.sort_key)

    def _document(self, entry: OrbitEntry) -> dict[str, Any]:
        _op, key, value = _operation(entry)
        fields: dict[str, Any] = {"hash": entry.hash}
        if key is not _ABSENT:
            fields["key"] = key
        return _with_value(fields, value)

    def all(self) -> list[dict[str, Any]]:
        """``all()`` of this database's type: events ``{hash, value}`` (every entry), documents
        ``{hash, key, value}``, keyvalue ``{key, value, hash}``; oldest first."""
        if self.kind == "events":
            return self.events_all()
        if self.kind == "documents":
            return [self._document(e) for e in self._deciding_puts()]
        answers = []
        for e in self._deciding_puts():
            _op, key, value = _operation(e)
            fields: dict[str, Any] = {}
            if key is not _ABSENT:
                fields["key"] = key
            answers.append({**_with_value(fields, value), "hash": e.hash})
        return answers

    def documents_iterator(self, amount: int | None = None) -> list[dict[str, Any]]:
        """Documents' (and keyvalue's) ``iterator({amount})``: newest first, all of them for
        ``None``. OrbitDB stops once its count of listed documents reaches ``amount``, checked
        after each log entry: an ``amount`` of 0 or less lists at most the newest entry's
        document."""
        found = self.all()[::-1]
        if amount is None:
            return found
        if amount > 0:
            return found[:amount]
        newest = self._sorted[-1][2] if self._sorted else None
        return found[:1] if found and found[0]["hash"] == newest else []

    def get(self, key: object) -> Any:
        """``get(key)``: events, the ``value`` of the entry of hash ``key`` (``None`` if not
        held); documents, ``{hash, key, value}`` of the document (``None`` if none); keyvalue,
        the value (``None`` if none)."""
        if self.kind == "events":
            entry = self._entries.get(key) if isinstance(key, str) else None
            if entry is None:
                return None
            value = _operation(entry)[2]
            return None if value is _ABSENT else value
        identity = _strict_identity(key)
        if self.kind == "documents":
            name = js_property_name(key)
            entry = None if name in INHERITED_PROPERTIES else self._by_name.get(name)
            if entry is None or _operation(entry)[0] != "PUT" or identity is None:
                return None
            if _strict_identity(_operation(entry)[1]) != identity:
                return None
            return self._document(entry)
        entry = self._by_identity.get(identity) if identity is not None else None
        if entry is None:
            return None
        op, _key, value = _operation(entry)
        return None if op != "PUT" or value is _ABSENT else value

    def query(self, predicate: Callable[[Any], bool]) -> list[Any]:
        """Documents' ``query(findFn)``: the values of the listed documents ``predicate`` accepts,
        newest first."""
        return [d.get("value") for d in self.all()[::-1] if predicate(d.get("value"))]


def materialise(kind: str, entries: Iterable[OrbitEntry], index_by: str = "_id") -> Materialiser:
    """A :class:`Materialiser` holding ``entries``."""
    state = Materialiser(kind, index_by)
    for entry in entries:
        state.add(entry)
    return state
