"""A node's metrics in the Prometheus text exposition format (version 0.0.4), for ``GET /metrics``.

Counters (``..._total``) count since the node started and only grow: they are sums of the node's
own monotonic tallies (:class:`~gridnode.node.NodeCounters`, the ``total_...`` of each
:class:`~gridnode.node.PeerSync`, :class:`~gridnode.node.ServedTotals`), never of values that a
later event replaces, so a scraper's ``rate()`` is never fooled by a reset it did not see. Gauges
are read as they stand. The names and their meaning: docs/http.md.

What a running node shows of itself is :class:`~gridnode.node.NodeStats` (and its peer id and
peers); the databases' rows are read in the storage worker by the caller and handed in.

Refused here: a client library (the format is a few lines of text), a metric whose series would
grow without bound (one per entry, per request or per peer), and the node's private state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from gridnode.node import Node

__all__ = ["CONTENT_TYPE", "Family", "exposition", "node_families"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    """One metric: its name, type, help and samples ``(labels, value)``."""

    name: str
    type: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Family:
        self.samples.append((labels, value))
        return self


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def exposition(families: Iterable[Family]) -> str:
    """The text format: ``# HELP``, ``# TYPE``, then one line per sample."""
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
                lines.append(f"{family.name}{{{inner}}} {_number(value)}")
            else:
                lines.append(f"{family.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def node_families(
    node: Node,
    databases: Sequence[Mapping[str, Any]],
    storage_bytes: int,
    version: str,
    *,
    max_storage: int = 0,
    storage_refusals: int = 0,
) -> list[Family]:
    """The metrics of a running node; ``databases`` as :func:`gridnode.ops.status_of_databases`
    gives them (read in the storage worker); the storage figures as
    :class:`~gridnode.quota.StorageQuota` has them."""
    counters = node.stats.counters
    syncs = list(node.stats.syncs.values())
    served = list(node.stats.served.values())

    def total(name: str, help_: str, value: float) -> Family:
        return Family(f"gridnode_{name}_total", "counter", help_).add(value)

    def gauge(name: str, help_: str, value: float) -> Family:
        return Family(f"gridnode_{name}", "gauge", help_).add(value)

    applied = Family(
        "gridnode_entries_applied_total",
        "counter",
        "Entries applied to this node's logs, by where they came from.",
    )
    for source in ("write", "sync", "gossip", "import"):
        applied.add(counters.applied.get(source, 0), source=source)
    rejected = Family(
        "gridnode_entries_rejected_total",
        "counter",
        "Entries refused (bad signature, not a writer, bad parents, ...), by reason.",
    )
    for reason, count in sorted(counters.rejected.items()):
        rejected.add(count, reason=reason)
    entries = Family("gridnode_database_entries", "gauge", "Entries held, per database.")
    heads = Family("gridnode_database_heads", "gauge", "Heads of the log, per database.")
    for info in databases:
        labels = {
            "address": str(info["address"]),
            "name": str(info["name"]),
            "type": str(info["type"]),
        }
        entries.add(int(info["entries"]), **labels)
        heads.add(int(info["head_count"]), **labels)
    families = [
        Family("gridnode_info", "gauge", "The node: its peer id and version.").add(
            1, peer_id=node.peer_id, version=version
        ),
        gauge("peers", "Connected peers.", len(node.peers())),
        gauge("databases", "Databases this node keeps.", len(databases)),
        entries,
        heads,
        applied,
        rejected,
        total(
            "announcements_refused",
            "Gossip announcements refused as malformed.",
            node.stats.rejected_announcements,
        ),
        total(
            "gossip_messages_received",
            "Gossip messages received from other nodes (announcements and peer records).",
            counters.gossip_received,
        ),
        total(
            "gossip_messages_published",
            "Gossip messages this node published (announcements and peer records).",
            counters.gossip_published,
        ),
        total("sync_pulls", "Pulls started from peers.", sum(s.pulls for s in syncs)),
        total("sync_failures", "Pulls that failed.", counters.sync_failures),
        total(
            "sync_pulls_saved",
            "Pulls announcements asked for, not run: what they named came meanwhile.",
            counters.pulls_saved,
        ),
        total(
            "sync_pulls_unrouted",
            "Announcements of lacking heads from no connected peer to pull them from.",
            counters.pulls_unrouted,
        ),
        gauge("sync_running", "Pulls running now.", sum(1 for s in syncs if s.running)),
        total(
            "sync_round_trips",
            "Round trips of the pulls that completed.",
            sum(s.total_round_trips for s in syncs),
        ),
        total(
            "sync_messages",
            "Sync messages both ways of the pulls that completed.",
            sum(s.total_messages for s in syncs),
        ),
        total(
            "sync_bytes_sent",
            "Bytes sent by the pulls that completed.",
            sum(s.total_bytes_sent for s in syncs),
        ),
        total(
            "sync_bytes_received",
            "Bytes received by the pulls that completed.",
            sum(s.total_bytes_received for s in syncs),
        ),
        total(
            "sync_entries_received",
            "Entry blocks received by the pulls that completed.",
            sum(s.total_entries_received for s in syncs),
        ),
        total("served_streams", "Sync streams served to peers.", sum(s.streams for s in served)),
        total(
            "served_bytes_sent",
            "Bytes sent serving peers' pulls.",
            sum(s.bytes_sent for s in served),
        ),
        total(
            "served_bytes_received",
            "Bytes received serving peers' pulls.",
            sum(s.bytes_received for s in served),
        ),
        total(
            "served_entries",
            "Entry blocks sent serving peers' pulls.",
            sum(s.entries_sent for s in served),
        ),
        total(
            "protocol_strikes",
            "Protocol violations counted against peers.",
            node.stats.counters.strikes,
        ),
        total(
            "private_refused",
            "Requests for a private database refused to a peer that may not read it.",
            node.stats.counters.private_refused,
        ),
        total(
            "replica_statements_published",
            "Signed replica statements this node published.",
            counters.statements_published,
        ),
        total(
            "replica_statements_refused",
            "Replica statements refused: malformed, forged, about another peer, or a flood.",
            counters.rejected_statements,
        ),
        gauge("storage_bytes", "Size of the SQLite file (with its WAL).", storage_bytes),
        gauge("storage_max_bytes", "The bound max_storage sets (0: none).", max_storage),
        gauge(
            "storage_full",
            "1 when the node is at max_storage: it follows, restores, imports and pulls nothing.",
            1 if max_storage and storage_bytes >= max_storage else 0,
        ),
        total(
            "storage_refusals",
            "Follows, restores, imports refused and pulls not run at max_storage.",
            storage_refusals,
        ),
    ]
    worker = Family(
        "gridnode_storage_worker_seconds_total",
        "counter",
        "Seconds the storage worker thread ran calls: for the node's own work, or for peers.",
    )
    throttled = Family(
        "gridnode_budget_throttled_seconds_total",
        "counter",
        "Seconds peers' requests waited because they were over their budget.",
    )
    if node.stats.worker is not None:
        for who, seconds in node.stats.worker.seconds.items():
            worker.add(seconds, **{"for": who})
    if node.stats.budgets is not None:
        throttled.add(node.stats.budgets.throttled)
    figures = node.stats.budget_figures()
    families += [
        worker,
        throttled,
        gauge(
            "budget_peers_in_debt",
            "Peers over their storage-worker or byte budget now (their requests wait).",
            sum(1 for f in figures if f["worker_left"] < 0 or f["bytes_left"] < 0),
        ),
    ]
    if node.stats.bitswap is not None:
        stats = node.stats.bitswap
        families += [
            total("bitswap_blocks_sent", "Blocks sent to bitswap peers.", stats.blocks_sent),
            total(
                "bitswap_block_bytes_sent",
                "Bytes of blocks sent to bitswap peers.",
                stats.block_bytes_sent,
            ),
            total(
                "bitswap_blocks_received",
                "Blocks received over bitswap that were asked for.",
                stats.blocks_received,
            ),
            total(
                "bitswap_unasked_blocks",
                "Blocks bitswap peers sent that nobody asked for (dropped).",
                stats.unasked_blocks,
            ),
            total("bitswap_wants_received", "Want-list entries received.", stats.wants_received),
            total(
                "bitswap_slow_readers_dropped",
                "Bitswap peers reset for taking no answer within the write timeout.",
                stats.slow_readers_dropped,
            ),
        ]
    orbit = node.orbitdb.stats
    refused = Family(
        "gridnode_orbitdb_refused_total",
        "counter",
        "OrbitDB blocks and heads streams refused, by reason (the error's class).",
    )
    for reason, count in sorted(orbit.refused.items()):
        refused.add(count, reason=reason)
    families += [
        gauge("orbitdb_databases", "OrbitDB databases followed.", len(node.orbitdb.replicas)),
        total(
            "orbitdb_entries_accepted",
            "OrbitDB entries verified and kept.",
            orbit.entries_accepted,
        ),
        total(
            "orbitdb_heads_exchanges",
            "OrbitDB heads protocol streams run, both ways.",
            orbit.heads_exchanges,
        ),
        refused,
    ]
    gateway = node.stats.gateway
    families += [
        total("gateway_requests", "UnixFS requests the gateway answered.", gateway.requests),
        total("gateway_files", "Files the gateway answered (200 or 206).", gateway.files),
        total("gateway_ranges", "Files the gateway answered by a Range (206).", gateway.ranges),
        total("gateway_listings", "Directory listings the gateway answered.", gateway.listings),
        total("gateway_bytes", "Bytes the gateway's UnixFS answers announced.", gateway.bytes),
        total(
            "gateway_not_found",
            "UnixFS requests for what the node does not hold.",
            gateway.not_found,
        ),
    ]
    dht = node.host.dht
    if dht is not None:
        counts = dht.stats
        families += [
            gauge("dht_table_peers", "Peers in the DHT routing table.", dht.table_size),
            gauge("dht_records", "Provider records held for other peers.", dht.records),
            total("dht_requests_received", "DHT requests answered.", counts.requests_received),
            total("dht_requests_sent", "DHT requests sent.", counts.requests_sent),
            total("dht_requests_failed", "DHT requests sent that failed.", counts.requests_failed),
            total(
                "dht_refused",
                "DHT requests and streams refused past a per-peer bound, and bad messages.",
                counts.rate_limited + counts.streams_refused + counts.bad_messages,
            ),
            total("dht_records_refused", "Provider records refused.", counts.records_refused),
            total("dht_provides", "CIDs this node provided.", counts.provides),
            total("dht_lookups", "DHT lookups this node ran.", counts.lookups),
        ]
    files = node.files
    families += [
        gauge(
            "files_held",
            "Files and directories pinned for followed catalogs and pinLinks databases.",
            len(files.held),
        ),
        gauge("files_fetching", "DAG fetches under way for them.", len(files.fetching)),
        total("files_fetched", "Files and directories fetched and pinned.", files.totals.fetched),
        total(
            "files_fetched_bytes",
            "Bytes of blocks those fetches received from peers.",
            files.totals.fetched_bytes,
        ),
        total(
            "files_fetch_failures",
            "File fetches that failed (tried again later).",
            files.totals.failed,
        ),
    ]
    families += nat_families(node.host.nat_status())
    return families


def nat_families(nat: Mapping[str, Any]) -> list[Family]:
    """Relay service, relay client and hole punching figures (issue 22), those that are on."""
    families: list[Family] = []

    def total(name: str, help_: str, value: float) -> Family:
        return Family(f"gridnode_{name}_total", "counter", help_).add(value)

    def gauge(name: str, help_: str, value: float) -> Family:
        return Family(f"gridnode_{name}", "gauge", help_).add(value)

    service = nat.get("relay_service")
    if service is not None:
        families += [
            gauge(
                "relay_reservations",
                "Peers holding a reservation on this relay.",
                service["reservations"],
            ),
            gauge("relay_circuits", "Circuits open through this relay.", service["circuits"]),
            total(
                "relay_reservations_refused",
                "Reservations refused (relay_max_reservations).",
                service["reservations_refused"],
            ),
            total(
                "relay_circuits_opened",
                "Circuits opened through this relay.",
                service["circuits_opened"],
            ),
            total(
                "relay_circuits_refused",
                "Circuits refused: no reservation, over a bound, target did not answer.",
                service["circuits_refused"],
            ),
            total(
                "relay_circuits_cut",
                "Circuits cut at relay_circuit_seconds or relay_circuit_bytes.",
                service["circuits_cut"],
            ),
            total(
                "relay_bytes",
                "Bytes carried through this relay (both directions).",
                service["bytes_relayed"],
            ),
        ]
    client = nat.get("relay_client")
    if client is not None:
        families += [
            gauge(
                "relay_reservations_held",
                "Relays this node holds a reservation on.",
                len(client["relays"]),
            ),
            total("relay_dials", "Connections dialled through a relay.", client["relayed_dials"]),
            total(
                "relay_dials_failed",
                "Dials through a relay that failed.",
                client["relayed_dials_failed"],
            ),
            total(
                "relay_inbound",
                "Connections that came in through a relay.",
                client["relayed_inbound"],
            ),
        ]
    reach = nat.get("reachability")
    if reach is not None:
        status = Family(
            "gridnode_reachability",
            "gauge",
            "1 for what AutoNAT dial-backs say of this node: public, private or unknown.",
        )
        for name in ("public", "private", "unknown"):
            status.add(1 if reach["status"] == name else 0, status=name)
        families += [status, total("autonat_checks", "Reachability checks run.", reach["checks"])]
    server = nat.get("autonat_server")
    if server is not None:
        families += [
            total(
                "autonat_dialbacks", "AutoNAT dial-backs this node ran for peers.", server["served"]
            ),
            total(
                "autonat_refused",
                "AutoNAT requests refused (relayed, no address at the observed IP, over the rate).",
                server["refused"],
            ),
        ]
    punch = nat.get("hole_punching")
    if punch is not None:
        successes = Family(
            "gridnode_holepunch_successes_total",
            "counter",
            "Hole punches that gave a direct connection, by its transport.",
        )
        for transport in sorted(set(punch["transports"]) | {"tcp"}):
            successes.add(punch["transports"].get(transport, 0), transport=transport)
        families += [
            total("holepunch_attempts", "DCUtR rounds run (either side).", punch["attempts"]),
            successes,
            total(
                "holepunch_failures",
                "Relayed connections left relayed after every round failed.",
                punch["failures"],
            ),
        ]
    return families
