"""protocols.kad: the DHT's routing table and provider records, without I/O."""

from __future__ import annotations

from protocols.kad import ProviderStore, RoutingTable, kad_key

OWN = kad_key(b"own")


def _table(**bounds: int) -> RoutingTable:
    return RoutingTable(OWN, **{"k": 2, "max_table": 10, "addrs_per_peer": 2, **bounds})


def _in_bucket(index: int, n: int) -> list[int]:
    """``n`` keys sharing exactly ``index`` leading bits with OWN."""
    flip = 1 << (255 - index)
    return [(OWN ^ flip) ^ (i + 1) for i in range(n)]


def test_a_full_bucket_keeps_its_peers_unless_one_failed() -> None:
    table = _table()
    a, b, c = _in_bucket(3, 3)
    assert table.add("a", a, ["/ip4/1.1.1.1/tcp/1", "/x/2", "/x/3"])
    assert table.add("b", b, [])
    assert not table.add("c", c, [])  # bucket full: the long-lived peers stay
    assert table.addrs("a", a) == ("/ip4/1.1.1.1/tcp/1", "/x/2")  # addrs_per_peer
    table.failed("b", b)
    assert "b" in table  # one failure keeps it, but makes it the one to go
    assert table.add("c", c, [])
    assert set(table.peers()) == {"a", "c"}
    table.failed("a", a)
    table.failed("a", a)
    assert "a" not in table and len(table) == 1


def test_the_table_is_bounded_in_all_and_closest_is_by_xor_distance() -> None:
    table = _table(k=20, max_table=3)
    keys = {f"p{i}": kad_key(bytes([i])) for i in range(5)}
    added = [peer for peer, key in keys.items() if table.add(peer, key, [])]
    assert len(table) == 3 and added == ["p0", "p1", "p2"]
    target = kad_key(b"target")
    got = table.closest(target, 2)
    want = sorted(((p, keys[p] ^ target) for p in added), key=lambda item: item[1])[:2]
    assert got == want
    assert all(peer != "p0" for peer, _ in table.closest(target, 3, exclude="p0"))


def test_provider_records_are_bounded_per_key_per_peer_and_in_all() -> None:
    store = ProviderStore(per_key=2, per_peer=2, total=3, ttl=100.0)
    assert store.store(b"k1", "a", ("/x/1",), now=0.0)
    assert store.store(b"k1", "b", (), now=0.0)
    assert not store.store(b"k1", "c", (), now=0.0)  # per key
    assert store.store(b"k2", "a", (), now=0.0)
    assert not store.store(b"k3", "a", (), now=0.0)  # per peer
    assert not store.store(b"k3", "c", (), now=0.0)  # in all
    assert len(store) == 3 and store.held_by("a") == 2
    assert store.store(b"k1", "a", ("/x/9",), now=50.0)  # a refresh is no new record
    assert store.providers(b"k1", now=120.0) == [("a", ("/x/9",))]  # b's expired at 100
    assert len(store) == 2 and store.held_by("b") == 0


def test_sweep_drops_expired_records_and_frees_their_peers_room() -> None:
    store = ProviderStore(per_key=5, per_peer=1, total=5, ttl=10.0)
    assert store.store(b"k1", "a", (), now=0.0)
    assert not store.store(b"k2", "a", (), now=5.0)
    store.sweep(now=10.0)
    assert len(store) == 0 and store.providers(b"k1", now=10.0) == []
    assert store.store(b"k2", "a", (), now=10.0)
