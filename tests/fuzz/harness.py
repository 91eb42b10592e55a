"""The fuzzing harness: run a target on one input and judge the outcome; a mutator; the corpus.

An input passes when the target returns or raises a :class:`~crdt.errors.GridnodeError` (a typed
refusal). Anything else it raises (``TypeError``, ``KeyError``, ``RecursionError``,
``MemoryError``, an ``AssertionError`` from a differential check, ...) is a crash. Each input runs
under a hang guard (``SIGALRM``, :data:`HANG_SECONDS`); its time is measured so the slowest input
can be reported.
"""

from __future__ import annotations

import hashlib
import random
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crdt.errors import GridnodeError
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode

__all__ = [
    "CORPUS",
    "HANG_SECONDS",
    "Crash",
    "Hang",
    "Mutator",
    "RunStats",
    "check",
    "load_corpus",
    "run_inputs",
]

CORPUS = Path(__file__).parent / "corpus"
#: An input running longer than this is a hang (a generous bound: the slowest seen is far below).
HANG_SECONDS = 5.0
#: Mutated inputs are cut to this length (a frame or a block may be far larger; lengths are
#: what matters to a decoder, and the corpus holds some large inputs).
MAX_MUTATED = 64 * 1024


class Hang(BaseException):
    """Raised by the alarm inside a target that ran too long (a ``BaseException``: the code under
    test must not be able to swallow it with ``except Exception``)."""


@dataclass
class Crash:
    target: str
    data: bytes
    error: str

    def __str__(self) -> str:
        return f"{self.target}: {self.error} on input {self.data[:64].hex()}... ({len(self.data)} bytes)"


@dataclass
class RunStats:
    target: str
    inputs: int = 0
    refused: int = 0
    crashes: list[Crash] = field(default_factory=list)
    slowest: float = 0.0
    slowest_input: bytes = b""
    seconds: float = 0.0


@contextmanager
def _hang_guard(seconds: float) -> Iterator[None]:
    def alarm(_signum: int, _frame: object) -> None:
        raise Hang(f"input ran over {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check(name: str, target: Callable[[bytes], None], data: bytes, stats: RunStats) -> None:
    """Run one input; count it in ``stats`` (a crash is recorded there, not raised)."""
    start = time.perf_counter()
    try:
        with _hang_guard(HANG_SECONDS):
            target(data)
    except GridnodeError:
        stats.refused += 1
    except Hang as exc:
        stats.crashes.append(Crash(name, data, f"hang: {exc}"))
    except Exception as exc:
        tb = traceback.format_exception(exc)
        stats.crashes.append(Crash(name, data, f"{type(exc).__name__}: {exc}\n{''.join(tb[-6:])}"))
    elapsed = time.perf_counter() - start
    stats.inputs += 1
    if elapsed > stats.slowest:
        stats.slowest = elapsed
        stats.slowest_input = data


def run_inputs(name: str, target: Callable[[bytes], None], inputs: Iterable[bytes]) -> RunStats:
    stats = RunStats(name)
    start = time.perf_counter()
    for data in inputs:
        check(name, target, data, stats)
    stats.seconds = time.perf_counter() - start
    return stats


def load_corpus(name: str) -> list[bytes]:
    """The corpus of a target, in file name order (deterministic)."""
    folder = CORPUS / name
    if not folder.is_dir():
        return []
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]


def save_input(name: str, data: bytes) -> Path:
    """Keep an input in a target's corpus under its content hash."""
    folder = CORPUS / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / hashlib.sha1(data).hexdigest()
    path.write_bytes(data)
    return path


# -- mutation -------------------------------------------------------------------------------------

#: Bytes that sit on CBOR and varint boundaries: heads with 1/2/4/8-byte arguments, the
#: indefinite marker, simple values, floats, tag 42, varint continuation.
_INTERESTING = [
    0x00,
    0x01,
    0x17,
    0x18,
    0x19,
    0x1A,
    0x1B,
    0x1F,
    0x20,
    0x3F,
    0x40,
    0x58,
    0x5B,
    0x5F,
    0x60,
    0x78,
    0x7B,
    0x7F,
    0x80,
    0x98,
    0x9B,
    0x9F,
    0xA0,
    0xB8,
    0xBB,
    0xBF,
    0xC2,
    0xD8,
    0x2A,
    0xF4,
    0xF5,
    0xF6,
    0xF7,
    0xF9,
    0xFA,
    0xFB,
    0xFF,
    0x71,
    0x12,
    0x55,
    0x70,
]
#: Whole items a decoder must bound: huge lengths, deep nesting, bad floats, odd tags, varints.
_TOKENS = [
    b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # bytes of 2**64-1
    b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00",  # a list of 2**32 items
    b"\xbb\x7f\xff\xff\xff\xff\xff\xff\xff",  # a map of 2**63-1 entries
    b"\x81" * 200,  # nesting beyond the depth bound
    b"\xa1\x61a" * 120,
    b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
    b"\xf9\x3c\x00",  # a 16-bit float
    b"\xd8\x2a\x58\x25\x00\x01\x71\x12\x20" + bytes(32),  # a link
    b"\xd8\x2a\x41\x00",
    b"\xc2\x41\x01",  # a bignum
    b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # a 9-byte varint
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    b"\x80\x00",  # a non-minimal varint
    b"\x01\x71\x12\x20",
    b"\x12\x20",
    b"\x01\x71\x00\x80\x01",
    b"\x0a\xa1\x67version\x02",  # the CARv2 pragma
    b"\x61t\x66heads?",
    b"\x62db",
    b"\x63fp\x50",
]


class Mutator:
    """Deterministic mutations of corpus inputs (a seeded ``random.Random``)."""

    def __init__(self, corpus: list[bytes], seed: int = 0) -> None:
        self.corpus = corpus or [b""]
        self.rng = random.Random(seed)

    def generate(self) -> bytes:
        rng = self.rng
        seed = rng.choice(self.corpus)
        if rng.random() < 0.3:
            structured = self._mutate_structure(seed)
            if structured is not None:
                return structured
        data = bytearray(seed)
        for _ in range(rng.choice((1, 1, 2, 3, 4, 8))):
            self._mutate(data)
        return bytes(data[:MAX_MUTATED])

    # Structure-aware: decode the input as DAG-CBOR (after a leading mode byte, if any), replace
    # one value in the tree with a value of another kind, encode it again canonically. This is
    # what finds type confusion (a list where a string was expected) behind the strict decoder.

    def _random_value(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.randrange(11 if depth < 2 else 8)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rng.choice(
                (0, 1, -1, 2, 23, 24, 255, 256, 2**31, 2**53, 2**62, 2**63, 2**64 - 1, -(2**64))
            )
        if kind == 3:
            return rng.choice((0.0, -0.0, 1.5, 1e300))
        if kind == 4:
            return rng.choice(
                ("", "t", "heads", "skip", "fp", "ids", "want", "grant", "*", "\u00e9" * 3)
            )
        if kind == 5:
            return rng.randbytes(rng.choice((0, 1, 16, 32, 48, 64, 65)))
        if kind == 6:
            return CID.for_block(rng.randbytes(4), codec=rng.choice(("dag-cbor", "raw")))
        if kind == 7:
            return rng.choice((0, 1, 2**62 - 1, 2**62))
        if kind == 8:
            return [self._random_value(depth + 1) for _ in range(rng.randrange(4))]
        if kind == 9:
            return {rng.choice(("t", "db", "v", "op", "x")): self._random_value(depth + 1)}
        return [[self._random_value(depth + 1)]]

    def _mutate_structure(self, seed: bytes) -> bytes | None:
        for skip in (0, 1):
            try:
                value = decode(seed[skip:])
            except GridnodeError:
                continue
            slots: list[tuple[Any, Any]] = []
            self._collect(value, slots, 0)
            if not slots:
                return None
            container, key = self.rng.choice(slots)
            container[key] = self._random_value()
            try:
                return seed[:skip] + encode(value)
            except GridnodeError:
                return None
        return None

    def _collect(self, value: Any, slots: list[tuple[Any, Any]], depth: int) -> None:
        if depth > 8 or len(slots) > 256:
            return
        if type(value) is dict:
            for key in value:
                slots.append((value, key))
                self._collect(value[key], slots, depth + 1)
        elif type(value) is list:
            for index, item in enumerate(value):
                slots.append((value, index))
                self._collect(item, slots, depth + 1)

    def _mutate(self, data: bytearray) -> None:
        rng = self.rng
        op = rng.randrange(10)
        n = len(data)
        if op == 0 and n:  # flip a bit
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # an interesting byte
            data[rng.randrange(n)] = rng.choice(_INTERESTING)
        elif op == 2:  # insert random bytes
            at = rng.randrange(n + 1)
            data[at:at] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3 and n:  # delete a span
            at = rng.randrange(n)
            del data[at : at + rng.randrange(1, 17)]
        elif op == 4 and n:  # truncate
            del data[rng.randrange(n) :]
        elif op == 5 and n:  # duplicate a span
            at = rng.randrange(n)
            span = data[at : at + rng.randrange(1, 65)]
            where = rng.randrange(n + 1)
            data[where:where] = span
        elif op == 6:  # insert a hostile token
            at = rng.randrange(n + 1)
            data[at:at] = rng.choice(_TOKENS)
        elif op == 7:  # splice with another corpus input
            other = rng.choice(self.corpus)
            if other:
                cut = rng.randrange(n + 1)
                data[cut:] = other[rng.randrange(len(other)) :]
        elif op == 8 and n:  # bump a byte (lengths off by one)
            at = rng.randrange(n)
            data[at] = (data[at] + rng.choice((1, -1, 2, -2, 0x80))) & 0xFF
        elif n >= 2:  # overwrite with a copy of another part
            a, b = rng.randrange(n), rng.randrange(n)
            size = rng.randrange(1, 9)
            data[a : a + size] = data[b : b + size]

    def inputs(self, count: int) -> Iterator[bytes]:
        for _ in range(count):
            yield self.generate()
