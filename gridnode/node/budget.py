"""Per-peer budgets of the node's shared resources: storage-worker time and bytes sent.

One storage worker thread (:mod:`gridnode.storage.worker`) and one uplink serve every peer. This
room owns one account per remote peer, shared by every protocol that works for it (sync serving,
bitswap serving, anything a remote peer triggers): a token bucket of storage-worker seconds per
second and one of bytes sent per second. The worker charges each call's measured duration to the
peer it was for and asks here how long a peer over its allowance must wait; senders charge the
bytes they write and wait out a debt the same way. A peer over budget waits on its own streams,
never slowing the others; the node's own work (:data:`~gridnode.storage.worker.LOCAL`) is
counted but not limited.

It refuses to know protocols, streams or storage: amounts in, delays out, time from the trio
clock (so tests run it on ``trio.testing.MockClock``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from gridnode.storage.worker import LOCAL, serving

__all__ = ["Allowance", "Bucket", "Budgets", "PeerAccount"]

#: Storage-worker seconds per second one peer may use, and the burst it may spend at once. A
#: quarter of the thread: a cold pull of 100k entries costs its server ~4 s of worker time
#: (docs/benchmarks.md), spread over the ~20 s the puller needs to verify and join them.
WORKER_RATE: Final = 0.25
WORKER_BURST: Final = 2.0
#: Bytes per second sent to one peer, and the burst (16 frames of the sync protocol's 1 MiB
#: chunks). Loopback catch-up runs at ~3 MB/s (docs/benchmarks.md); this is 10x that.
BYTES_RATE: Final = 32 * 1024 * 1024
BYTES_BURST: Final = 16 * 1024 * 1024
#: Peers whose accounts are kept (a full account is forgotten first: it is what a new one is).
MAX_ACCOUNTS: Final = 4096


@dataclass(frozen=True)
class Allowance:
    """A rate per second and the most that may be spent at once."""

    rate: float
    burst: float


@dataclass
class Bucket:
    """A token bucket that may go into debt: a call's cost is known only after it ran."""

    allowance: Allowance
    level: float
    updated: float
    #: Everything charged, for the stats.
    spent: float = 0.0

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(
                self.allowance.burst, self.level + (now - self.updated) * self.allowance.rate
            )
        self.updated = max(self.updated, now)

    def charge(self, amount: float, now: float) -> None:
        self.refill(now)
        self.level -= amount
        self.spent += amount

    def delay(self, now: float) -> float:
        """Seconds until the level is back at zero (0 when it is not negative)."""
        self.refill(now)
        # (Not exactly 0: float rounding could leave a debt too small to move the clock.)
        if self.level >= -1e-9:
            return 0.0
        return -self.level / self.allowance.rate


@dataclass
class PeerAccount:
    """One peer's worker time and bytes."""

    worker: Bucket
    sent: Bucket
    #: Seconds the peer's work waited for its allowance.
    throttled: float = 0.0

    def full(self, now: float) -> bool:
        self.worker.refill(now)
        self.sent.refill(now)
        return (
            self.worker.level >= self.worker.allowance.burst
            and self.sent.level >= self.sent.allowance.burst
        )


@dataclass
class Budgets:
    """Every peer's account; a :class:`~gridnode.storage.worker.Meter` for the storage worker."""

    worker: Allowance = field(default_factory=lambda: Allowance(WORKER_RATE, WORKER_BURST))
    sent: Allowance = field(default_factory=lambda: Allowance(BYTES_RATE, BYTES_BURST))
    clock: Callable[[], float] = trio.current_time
    max_accounts: int = MAX_ACCOUNTS
    accounts: dict[str, PeerAccount] = field(default_factory=dict)
    #: Seconds peers' work waited for its allowance, over all peers (never forgotten).
    throttled: float = 0.0

    def account(self, peer: str) -> PeerAccount:
        found = self.accounts.pop(peer, None)
        now = self.clock()
        if found is None:
            found = PeerAccount(
                Bucket(self.worker, self.worker.burst, now),
                Bucket(self.sent, self.sent.burst, now),
            )
            if len(self.accounts) >= self.max_accounts:
                self._forget(now)
        self.accounts[peer] = found  # most recently active last
        return found

    def _forget(self, now: float) -> None:
        # A full account holds nothing a new one would not: forget those first, then the oldest
        # (a peer in debt that comes back as new gets one burst more, no more than a new peer).
        for peer in [p for p, a in self.accounts.items() if a.full(now)]:
            del self.accounts[peer]
        while len(self.accounts) >= self.max_accounts:
            del self.accounts[next(iter(self.accounts))]

    # -- the storage worker's meter ------------------------------------------------------------

    def delay(self, tag: str) -> float:
        if tag == LOCAL:
            return 0.0
        delay = self.account(tag).worker.delay(self.clock())
        if delay > 0:
            self.accounts[tag].throttled += delay
            self.throttled += delay
        return delay

    def charge(self, tag: str, seconds: float) -> None:
        if tag != LOCAL:
            self.account(tag).worker.charge(seconds, self.clock())

    # -- what the protocols call ---------------------------------------------------------------

    def serving(self, peer: str) -> AbstractContextManager[None]:
        """Storage calls made inside are for ``peer`` (charged to its account)."""
        return serving(peer)

    async def send(self, peer: str, size: int) -> None:
        """``size`` bytes are about to go to ``peer``: charge them, and wait while it is in debt."""
        account = self.account(peer)
        account.sent.charge(size, self.clock())
        delay = account.sent.delay(self.clock())
        if delay > 0:
            account.throttled += delay
            self.throttled += delay
            await trio.sleep(delay)

    def figures(self) -> Iterator[dict[str, Any]]:
        """Per peer: worker seconds spent and left, bytes sent and left, seconds throttled."""
        now = self.clock()
        for peer, account in self.accounts.items():
            account.worker.refill(now)
            account.sent.refill(now)
            yield {
                "peer": peer,
                "worker_seconds": account.worker.spent,
                "worker_left": account.worker.level,
                "bytes_sent": int(account.sent.spent),
                "bytes_left": int(account.sent.level),
                "throttled_seconds": account.throttled,
            }
