"""Gossipsub as gridnode uses it: a lossy, signed, validated hint channel per topic.

Gridnode gossips heads; the stream protocol is what delivers entries. So a dropped gossip message
costs a little latency, never data, and :meth:`Gossip.publish` never blocks on a slow peer or
raises because a queue is full. py-libp2p's defaults dropped far more than that (10 of 2,000 rapid
messages arrived); :class:`GossipConfig` holds the settings that change it, each with the reason
and the measurement in docs/decisions.md ("py-libp2p 0.8.1 behind gridnode.net").

What py-libp2p offers no option for is done by narrow subclasses, kept here and nowhere else:

- the per-peer outbound queue size (fixed at 32 RPCs): :class:`_PeerQueues`;
- the subscription buffer (fixed at 32 messages, then a WARNING per message): local delivery is
  ours (:meth:`_Pubsub.notify_subscriptions`), into one bounded buffer per :class:`Subscription`;
- the per-peer, per-topic rate limit also counted the node's *own* publishes, so the 11th head a
  node announced within a second went nowhere: own messages are exempt (:class:`_GossipSub`);
- per-message bookkeeping that grew without bound (a timestamp per message, kept for a feature we
  turn off) or until the next heartbeat (the equivocation table): bounded.

And we do not speak gossipsub 1.2 (see ``_PROTOCOLS``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.tools.anyio_service import background_trio_service
from libp2p.tools.anyio_service.exceptions import LifecycleError

__all__ = ["Gossip", "GossipConfig", "GossipMessage", "Subscription", "TopicValidator"]

log = logging.getLogger(__name__)

#: ``validator(origin_peer_id, data) -> accept?``; a rejected message is neither delivered nor
#: forwarded, and counts against the peer that sent it to us.
TopicValidator = Callable[[str, bytes], bool]

# Gossipsub versions we speak. Not 1.2: py-libp2p sends an IDONTWANT to every mesh peer for every
# message, even its own and even small ones (go-libp2p: received messages over 1 KiB only); that
# doubled the RPCs and halved the throughput. 1.3+ are drafts other implementations do not run.
_PROTOCOLS: Final = (PROTOCOL_ID_V11, PROTOCOL_ID)
# Messages per topic whose (origin, seqno) we remember to detect equivocation.
_EQUIVOCATION_MEMORY: Final = 4096


@dataclass(frozen=True)
class GossipConfig:
    """Gossipsub settings; each default is explained in docs/decisions.md."""

    #: RPCs waiting to be written to one peer before new ones are dropped (py-libp2p: 32).
    peer_queue_size: int = 4096
    #: Messages a :class:`Subscription` buffers for a slow reader before dropping (py-libp2p: 32).
    subscription_buffer: int = 4096
    #: Messages per second one remote peer may forward on one topic before the excess is not
    #: forwarded (py-libp2p: 10, counting our own publishes too; ours are exempt here).
    peer_rate_limit: float = 1000.0
    #: Heartbeat (mesh upkeep, gossip, score decay), seconds (py-libp2p: 120; go and js: 1).
    heartbeat_interval: int = 1
    #: Invalid messages (net of decay) a peer may forward on a topic before we ignore it there.
    invalid_message_allowance: float = 10.0
    #: Per-heartbeat decay of the invalid-message count (0.995/s: half-life ~2.3 minutes).
    invalid_message_decay: float = 0.995
    #: Largest RPC frame accepted from a peer, bytes (py-libp2p: 1 MiB).
    max_rpc_size: int = 1 << 20
    #: Topics one remote peer may subscribe to (py-libp2p: 100; a node has a topic per database).
    max_topics_per_peer: int = 4096


class GossipMessage(tuple[str, bytes]):
    """One gossip message: who signed it (its origin) and its bytes; it unpacks as
    ``(origin, data)`` and compares as that pair.

    :attr:`forwarder` is the connected peer this node received it from (the origin itself, or a
    peer that relayed it; this node for its own messages): the peer to ask for what the message
    names, since the origin is often not connected (issue 21: 36,081 pulls aimed at origins
    failed with "peer ID not found" among 30 nodes).
    """

    forwarder: str

    def __new__(cls, peer_id: str, data: bytes, forwarder: str | None = None) -> GossipMessage:
        message = super().__new__(cls, (peer_id, data))
        message.forwarder = peer_id if forwarder is None else forwarder
        return message

    @property
    def peer_id(self) -> str:
        return self[0]

    @property
    def data(self) -> bytes:
        return self[1]

    def __repr__(self) -> str:
        return f"GossipMessage({self[0]!r}, {self[1]!r}, forwarder={self.forwarder!r})"


class Subscription:
    """The messages of one topic, as an async iterator of :class:`GossipMessage`.

    Use it as ``async with await host.subscribe(topic) as sub: async for msg in sub: ...``; leaving
    the block (or :meth:`aclose`) unsubscribes. When the reader falls behind by more than
    ``GossipConfig.subscription_buffer`` messages, new ones are dropped and counted in
    :attr:`dropped`.
    """

    def __init__(self, gossip: Gossip, topic: str, buffer: int) -> None:
        self.topic = topic
        #: Messages dropped because the reader was too slow.
        self.dropped = 0
        self._gossip = gossip
        self._send, self._receive = trio.open_memory_channel[GossipMessage](buffer)

    def __repr__(self) -> str:
        return f"<Subscription {self.topic!r}>"

    def _deliver(self, message: GossipMessage) -> None:
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self.dropped += 1
            log.debug("subscription %r is full; dropped a message", self.topic)
        except trio.ClosedResourceError:
            pass

    async def receive(self) -> GossipMessage:
        """The next message; raises ``trio.EndOfChannel`` once unsubscribed."""
        return await self._receive.receive()

    def __aiter__(self) -> AsyncIterator[GossipMessage]:
        return self._receive.__aiter__()

    async def aclose(self) -> None:
        """Unsubscribe (idempotent); iteration ends after the buffered messages."""
        await self._gossip._unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _PeerQueues(dict[Any, Any]):
    """``Pubsub.peer_queues`` whose new ``RpcQueue``s hold ``size`` RPCs.

    py-libp2p creates each peer's queue inside ``Pubsub._handle_new_peer`` with its fixed size of
    32 and fills it at once (pending messages, replays); setting the size as the queue is stored
    is the first moment we can, and early enough.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size

    def __setitem__(self, peer_id: Any, queue: Any) -> None:
        queue._queue.max_size = self._size
        super().__setitem__(peer_id, queue)


class _Pubsub(Pubsub):
    """py-libp2p's Pubsub with local delivery into gridnode's subscriptions."""

    def __init__(self, host: Any, router: Any, config: GossipConfig) -> None:
        super().__init__(
            host,
            router,
            strict_signing=True,
            max_subscriptions_per_peer=config.max_topics_per_peer,
            max_inbound_rpc_size=config.max_rpc_size,
        )
        self.peer_queues = _PeerQueues(config.peer_queue_size)
        self.local_subscriptions: dict[str, set[Subscription]] = {}
        #: id(message being pushed) -> the peer that sent it to us; py-libp2p passes the
        #: forwarder to push_msg but not on to notify_subscriptions, which push_msg calls.
        self._forwarders: dict[int, Any] = {}

    async def push_msg(self, msg_forwarder: Any, msg: Any) -> None:
        self._forwarders[id(msg)] = msg_forwarder
        try:
            await super().push_msg(msg_forwarder, msg)
        finally:
            self._forwarders.pop(id(msg), None)

    async def continuously_read_stream(self, stream: Any) -> None:
        # Each peer's gossip stream is read in its connection's task, not the service's, and
        # hands every message to a new task of the service's. While the service stops (the node
        # shutting down under load, connections not all closed yet), its task group is already
        # closed: py-libp2p checks ``is_running``, which is still true then, and the
        # "Nursery is closed to new arrivals" RuntimeError ended the connection's task and
        # crashed the node (issue 21). Reading ends there instead: nothing can be handled anyway.
        try:
            await super().continuously_read_stream(stream)
        except (RuntimeError, LifecycleError) as exc:
            if isinstance(exc, RuntimeError) and "closed to new arrivals" not in str(exc):
                raise
            log.debug("gossip stream from a peer ended: the gossip service stops (%s)", exc)

    def notify_subscriptions(self, publish_message: Any) -> None:
        origin: str | None = None
        for topic in publish_message.topicIDs:
            subscriptions = self.local_subscriptions.get(topic)
            if not subscriptions:
                continue
            if origin is None:
                origin = str(ID(publish_message.from_id))
            forwarder = self._forwarders.get(id(publish_message))
            message = GossipMessage(
                origin,
                bytes(publish_message.data),
                None if forwarder is None else str(forwarder),
            )
            for subscription in tuple(subscriptions):
                subscription._deliver(message)


class _GossipSub(GossipSub):
    """py-libp2p's GossipSub: own publishes exempt from the rate limit, per-message state bounded."""

    def _check_spam_protection(self, peer_id: Any, msg: Any) -> bool:
        if self.pubsub is not None and peer_id == self.pubsub.my_id:
            return True
        return bool(super()._check_spam_protection(peer_id, msg))

    async def publish(self, msg_forwarder: Any, pubsub_msg: Any) -> None:
        try:
            await super().publish(msg_forwarder, pubsub_msg)
        except OSError as exc:
            # py-libp2p reads the listener's address for every publish; a message forwarded
            # while the host shuts down finds the socket closed (seen in bench/bench_sync.py).
            # Nothing can be sent then anyway; it must not fail the node's shutdown.
            log.debug("gossip publish during shutdown dropped: %s", exc)
            return
        # A timestamp per message for py-libp2p's adaptive gossip, pruned only when that is on
        # (it is off here): without this, a list that grows for as long as the node runs.
        self.recent_message_deliveries.clear()

    def _check_equivocation(self, msg: Any) -> bool:
        table = self.equivocation_detection
        if len(table) >= _EQUIVOCATION_MEMORY:
            for key in list(table)[: _EQUIVOCATION_MEMORY // 2]:
                del table[key]
        return bool(super()._check_equivocation(msg))


def _score_params(config: GossipConfig) -> Any:
    threshold = -config.invalid_message_allowance
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(
            weight=1.0, cap=math.inf, decay=config.invalid_message_decay
        ),
        publish_threshold=threshold,
        gossip_threshold=threshold,
        graylist_threshold=threshold,
    )


#: How long re-opening a peer's gossip stream may take (:meth:`Gossip.reattach`), and the
#: pauses after which our subscriptions are sent to it again.
REATTACH_SECONDS: Final = 10.0
REATTACH_RESENDS: Final = (0.25, 0.5, 1.0, 2.0, 4.0)


class Gossip:
    """The gossipsub side of a host: subscriptions, publishing, validators, scores."""

    def __init__(self, libp2p_host: Any, config: GossipConfig) -> None:
        self._config = config
        self._router = _GossipSub(
            protocols=list(_PROTOCOLS),
            degree=6,
            degree_low=5,
            degree_high=12,
            heartbeat_interval=config.heartbeat_interval,
            score_params=_score_params(config),
            spam_protection_enabled=True,
            max_messages_per_topic_per_second=config.peer_rate_limit,
            # py-libp2p's own inventions, unknown to go/js gossipsub: a mesh degree that follows a
            # "network health" estimate, and extra grafts chasing IP diversity (all peers share
            # one IP on a LAN or in tests).
            adaptive_gossip_enabled=False,
            eclipse_protection_enabled=False,
        )
        self._pubsub = _Pubsub(libp2p_host, self._router, config)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the pubsub and router services for the duration of the block."""
        async with background_trio_service(self._pubsub), background_trio_service(self._router):
            await self._pubsub.wait_until_ready()
            yield

    def close(self) -> None:
        """Stop the thread py-libp2p's Pubsub starts for its seen-messages cache, and never stops."""
        self._pubsub.seen_messages.stop()

    async def subscribe(self, topic: str) -> Subscription:
        """A new subscription to ``topic`` (several may be open at once)."""
        subscription = Subscription(self, topic, self._config.subscription_buffer)
        local = self._pubsub.local_subscriptions.setdefault(topic, set())
        local.add(subscription)
        if len(local) == 1:
            await self._pubsub.subscribe(topic)
        return subscription

    async def _unsubscribe(self, subscription: Subscription) -> None:
        await subscription._send.aclose()
        local = self._pubsub.local_subscriptions.get(subscription.topic)
        if local is None or subscription not in local:
            return
        local.discard(subscription)
        if not local:
            del self._pubsub.local_subscriptions[subscription.topic]
            if self._pubsub.manager.is_running:
                await self._pubsub.unsubscribe(subscription.topic)

    async def reattach(self, peer: str) -> None:
        """``peer``'s connection was replaced: a hole punch closed the relayed one its gossip
        streams ran on, and a direct one remains. py-libp2p keeps a peer while any connection
        to it remains, and so went on writing to the dead stream; and a punch comes within
        milliseconds of the relayed connection, often before either side's subscriptions
        (its hello) have crossed. So: drop the peer and add it again, which opens a new stream
        on the connection left and sends our hello; then send our subscriptions again a few
        times over the next seconds (the peer, doing the same on its side, drops us and forgets
        what we told it). Subscriptions are idempotent: repeating them costs a few bytes."""
        peer_id = ID.from_base58(peer)
        pubsub = self._pubsub
        if not pubsub.manager.is_running:
            return
        if peer_id in pubsub.peers:
            pubsub._handle_dead_peer(peer_id)
        for delay in REATTACH_RESENDS:
            if peer_id not in pubsub.peers:
                if not pubsub._peer_is_connected(peer_id):
                    return
                await pubsub.ensure_peer_stream(peer_id, timeout=REATTACH_SECONDS)
            elif pubsub.topic_ids:
                self._router.send_rpc(peer_id, pubsub.get_hello_packet(), priority=True)
            await trio.sleep(delay)

    async def publish(self, topic: str, data: bytes) -> None:
        """Sign and send ``data`` to ``topic``'s peers; a full peer queue drops, never raises."""
        await self._pubsub.publish(topic, bytes(data))

    def set_topic_validator(self, topic: str, validator: TopicValidator) -> None:
        """Check every message of ``topic`` (ours too) before delivery and forwarding."""

        def check(forwarder: Any, msg: Any) -> bool:
            try:
                return bool(validator(str(ID(msg.from_id)), bytes(msg.data)))
            except Exception:
                log.exception("gossip validator for %r failed; message rejected", topic)
                return False

        self._pubsub.set_topic_validator(topic, check, False)

    def topic_peers(self, topic: str) -> list[str]:
        """The peers that told us they subscribe to ``topic``."""
        return sorted(str(peer) for peer in self._pubsub.peer_topics.get(topic, ()))

    def score(self, peer_id: str, topic: str) -> float:
        """The peer's gossip score on ``topic`` (0 is neutral; negative after invalid messages)."""
        scorer: Any = self._router.scorer
        return float(scorer.score(ID.from_base58(peer_id), [topic]))
