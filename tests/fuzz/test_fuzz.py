"""The bounded fuzz run of CI: every target over its corpus plus a few thousand mutated inputs.

Each input must end in a return or a typed refusal (a ``GridnodeError``); anything else is a crash
and fails the test with the input in hex. A run is cut short after ``SECONDS_PER_TARGET``; the
long run is ``python tests/fuzz/run.py --seconds N`` (tests/fuzz/README.md).
"""

import time

import pytest

from crdt.errors import InvalidCID
from tests.fuzz.harness import HANG_SECONDS, Mutator, RunStats, check, load_corpus, run_inputs
from tests.fuzz.targets import TARGETS

#: Mutated inputs per target, and the wall-clock cap on each target's run.
MUTATED = 4000
SECONDS_PER_TARGET = 2.5


def _bounded(name: str, seed: int) -> RunStats:
    corpus = load_corpus(name)
    target = TARGETS[name]
    stats = run_inputs(name, target, corpus)
    deadline = time.perf_counter() + SECONDS_PER_TARGET
    for data in Mutator(corpus, seed).inputs(MUTATED):
        check(name, target, data, stats)
        if time.perf_counter() > deadline:
            break
    return stats


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target(name):
    assert load_corpus(name), f"no corpus for {name}: run tests/fuzz/seed_corpus.py"
    stats = _bounded(name, seed=sum(name.encode()))
    print(
        f"{name}: {stats.inputs} inputs, {stats.refused} refused, {len(stats.crashes)} crashes, "
        f"slowest {stats.slowest * 1000:.1f} ms"
    )
    assert not stats.crashes, "\n\n".join(str(c) for c in stats.crashes[:5])
    assert stats.inputs >= len(load_corpus(name)) + 100
    assert stats.slowest < HANG_SECONDS


def test_the_harness_catches_untyped_errors_and_hangs():
    def untyped(data: bytes) -> None:
        if data == b"boom":
            raise TypeError("unhashable")
        if data == b"typed":
            raise InvalidCID("refused")

    stats = run_inputs("probe", untyped, [b"ok", b"typed", b"boom"])
    assert (stats.inputs, stats.refused, len(stats.crashes)) == (3, 1, 1)
    assert stats.crashes[0].data == b"boom" and "TypeError" in stats.crashes[0].error

    def swallows_everything(data: bytes) -> None:
        try:
            while True:
                pass
        except Exception:  # the hang guard is a BaseException: this cannot hide a hang
            pass

    import tests.fuzz.harness as harness

    old, harness.HANG_SECONDS = harness.HANG_SECONDS, 0.2
    try:
        stats = run_inputs("probe", swallows_everything, [b""])
    finally:
        harness.HANG_SECONDS = old
    assert len(stats.crashes) == 1 and stats.crashes[0].error.startswith("hang")
