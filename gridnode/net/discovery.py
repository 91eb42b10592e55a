"""LAN discovery over mDNS: announce this host, and report the other gridnode hosts that announce.

Off unless ``open_host(..., mdns=True)``: on a shared or public network, announcing a node to the
whole LAN is surprising; an operator turns it on for a home or office LAN.

The records follow the libp2p mDNS spec: a DNS-SD service whose instance name is random, with one
TXT string ``dnsaddr=<multiaddr>/p2p/<id>`` per address (py-libp2p writes its second and later
addresses as ``dnsaddr2=``, ``dnsaddr3=``...; we read those too). The service type is ours, ``_p2p-gridnode._udp.local.`` (py-libp2p's form for a
"private network" fingerprint), so a gridnode host neither finds nor is found by every other
libp2p program on the LAN (IPFS nodes answer to the spec's ``_p2p._udp.local.``).

We drive zeroconf, the mDNS library py-libp2p's own discovery is built on, ourselves rather than
through py-libp2p's ``MDNSDiscovery``; the reasons are measured in docs/decisions.md ("LAN discovery
with mDNS"). In short: its blocking zeroconf calls ran on the trio thread, its peers went to a
process-wide handler list and into the peerstore from zeroconf's thread, and it announced on every
interface, with a wildcard listen address announced as it is (``/ip4/0.0.0.0/...``).

Here zeroconf's blocking calls run in worker threads, its callbacks (in its browser thread) only
hand results over to the trio thread, and everything is stopped and joined when the host closes.
mDNS is unauthenticated: anyone on the LAN can announce any peer id at any address. A discovered
address is only a hint; :meth:`Host.connect <gridnode.net.host.Host.connect>` authenticates the
peer (Noise) before anything is said to it.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, NamedTuple

import ifaddr
import multiaddr
import trio
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceListener,
    Zeroconf,
)

from gridnode.errors import NetError

__all__ = ["SERVICE_TYPE", "DiscoveredPeer", "DiscoveredPeers", "Discovery", "run_mdns"]

log = logging.getLogger(__name__)

#: The DNS-SD service type gridnode hosts announce and browse.
SERVICE_TYPE: Final = "_p2p-gridnode._udp.local."
# Peers remembered at once (a flood of fake announcements cannot grow memory past this).
MAX_PEERS: Final = 1024
# Addresses kept from one announcement.
MAX_ADDRS: Final = 16
# How long zeroconf's browser thread waits for a service's records it has not got yet.
_INFO_TIMEOUT_MS: Final = 2000
_TXT_KEY: Final = b"dnsaddr"


class DiscoveredPeer(NamedTuple):
    """A gridnode host on the LAN: its peer id, and its addresses for :meth:`Host.connect`."""

    peer_id: str
    #: Full addresses, ``/ip4/.../tcp/N/p2p/<peer id>``; loopback ones last.
    addrs: list[str]


# The records: what we announce, what we accept.


def encode_txt(addrs: Iterable[str]) -> bytes:
    """The TXT record for ``addrs`` (full ``.../p2p/<id>`` multiaddrs): ``dnsaddr=<addr>`` each."""
    text = b""
    for addr in addrs:
        string = _TXT_KEY + b"=" + addr.encode()
        if len(string) > 255:
            raise ValueError(f"address too long for a TXT string: {addr}")
        text += bytes([len(string)]) + string
    return text


def parse_txt(text: bytes) -> DiscoveredPeer | None:
    """The peer a TXT record announces, or None if it announces no usable one.

    Each ``dnsaddr=`` string (py-libp2p also writes ``dnsaddr2=``, ``dnsaddr3=``...) must be an
    ``/ip4`` or ``/ip6`` TCP address ending in ``/p2p/<id>``, all with the same id; other strings
    are ignored, other kinds of address skipped (we dial only TCP), and a record naming two peer
    ids is refused as a whole. At most :data:`MAX_ADDRS` addresses are kept.
    """
    peer_id: str | None = None
    addrs: list[str] = []
    for string in _txt_strings(text):
        key, sep, value = string.partition(b"=")
        suffix = key[len(_TXT_KEY) :]
        if not sep or not key.startswith(_TXT_KEY) or (suffix and not suffix.isdigit()):
            continue
        try:
            addr = multiaddr.Multiaddr(value.decode())
            names = [protocol.name for protocol in addr.protocols()]
            addr_peer = addr.value_for_protocol("p2p")
        except Exception:
            continue
        if names not in (["ip4", "tcp", "p2p"], ["ip6", "tcp", "p2p"]):
            continue
        if peer_id is None:
            peer_id = addr_peer
        elif addr_peer != peer_id:
            return None
        if str(addr) not in addrs and len(addrs) < MAX_ADDRS:
            addrs.append(str(addr))
    if peer_id is None:
        return None
    addrs.sort(key=_is_loopback)  # stable: announced order, loopback last
    return DiscoveredPeer(peer_id, addrs)


def _txt_strings(text: bytes) -> list[bytes]:
    """The length-prefixed strings of a TXT record (a truncated last one is dropped)."""
    strings = []
    i = 0
    while i < len(text):
        length = text[i]
        if i + 1 + length > len(text):
            break
        strings.append(text[i + 1 : i + 1 + length])
        i += 1 + length
    return strings


def _is_loopback(addr: str) -> bool:
    host = addr.split("/")[2]
    return ipaddress.ip_address(host).is_loopback


def local_ips() -> list[str]:
    """This machine's IPv4 and IPv6 addresses (IPv6 link-local ones left out: they need a zone)."""
    ips = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            if not ipaddress.ip_address(address).is_link_local:
                ips.append(address)
    return ips


def announced_addrs(listen: Iterable[str], peer_id: str, ips: Iterable[str]) -> list[str]:
    """What to announce for the bound ``listen`` addresses, as ``.../p2p/<peer_id>``.

    A wildcard (``/ip4/0.0.0.0``, ``/ip6/::``) is replaced by this machine's addresses of its
    family (``ips``), loopback ones only if there is no other: a peer elsewhere on the LAN cannot
    use them, and one on this machine can use the others. Other addresses are announced as they
    are; only IP addresses over TCP or QUIC v1 (``/udp/N/quic-v1``) are announced.
    """
    ips = list(ips)
    result: list[str] = []
    for address in listen:
        parts = address.split("/")
        tcp = len(parts) == 5 and parts[3] == "tcp"
        quic = len(parts) == 6 and parts[3] == "udp" and parts[5] == "quic-v1"
        if parts[1] not in ("ip4", "ip6") or not (tcp or quic):
            continue
        family, host, port = parts[1], parts[2], parts[4]
        transport = f"tcp/{port}" if tcp else f"udp/{port}/quic-v1"
        if ipaddress.ip_address(host).is_unspecified:
            version = 4 if family == "ip4" else 6
            mine = [ip for ip in ips if ipaddress.ip_address(ip).version == version]
            routable = [ip for ip in mine if not ipaddress.ip_address(ip).is_loopback]
            hosts = routable or mine
        else:
            hosts = [host]
        for one in hosts:
            full = f"/{family}/{one}/{transport}/p2p/{peer_id}"
            if full not in result:
                result.append(full)
    return result


def mdns_interfaces(listen: Iterable[str]) -> list[str] | InterfaceChoice:
    """The IPv4 addresses whose interfaces mDNS runs on: those the host listens on.

    A host listening on 127.0.0.1 only is not reachable from the LAN, so it announces on the
    loopback interface only (where hosts on this machine hear it); a wildcard or an IPv6-only
    host uses every IPv4 interface. mDNS runs over IPv4; the records may carry IPv6 addresses.
    """
    ipv4 = []
    for address in listen:
        parts = address.split("/")
        if len(parts) < 3:
            continue
        if parts[1] == "ip4" and not ipaddress.ip_address(parts[2]).is_unspecified:
            ipv4.append(parts[2])
        elif parts[1] in ("ip4", "ip6") and ipaddress.ip_address(parts[2]).is_unspecified:
            return InterfaceChoice.All
    return sorted(set(ipv4)) or InterfaceChoice.All


# The trio side: what has been found, and who is waiting for it.


class DiscoveredPeers:
    """Peers found on the LAN, as an async iterator of :class:`DiscoveredPeer`.

    Made by :meth:`Host.discovered <gridnode.net.host.Host.discovered>`. It first yields every
    peer known at that moment, then each new one, and a known one again when its addresses
    change. A peer not yet read is held once, with its latest addresses, and forgotten if it
    leaves (announces its goodbye, or its record expires); so a slow reader misses nothing that is
    still there, and holds at most :data:`MAX_PEERS`. Iteration ends when the host closes or on
    :meth:`aclose`.
    """

    def __init__(self, discovery: Discovery, known: dict[str, list[str]]) -> None:
        self._discovery = discovery
        self._pending = dict(known)
        self._changed = trio.Event()
        self._closed = False

    def __repr__(self) -> str:
        return f"<DiscoveredPeers, {len(self._pending)} unread>"

    def _offer(self, peer_id: str, addrs: list[str]) -> None:
        self._pending.pop(peer_id, None)  # re-queued last, with its newest addresses
        self._pending[peer_id] = addrs
        self._changed.set()

    def _forget(self, peer_id: str) -> None:
        self._pending.pop(peer_id, None)

    def _end(self) -> None:
        self._closed = True
        self._pending.clear()
        self._changed.set()

    def __aiter__(self) -> DiscoveredPeers:
        return self

    async def __anext__(self) -> DiscoveredPeer:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._changed = trio.Event()
            await self._changed.wait()
        peer_id = next(iter(self._pending))
        return DiscoveredPeer(peer_id, list(self._pending.pop(peer_id)))

    async def aclose(self) -> None:
        """Stop receiving (idempotent); iteration ends."""
        self._discovery._iterators.discard(self)
        self._end()

    async def __aenter__(self) -> DiscoveredPeers:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Discovery:
    """The peers mDNS has found, kept on the trio thread; fed by :class:`_Listener`."""

    def __init__(self, own_peer_id: str) -> None:
        self._own = own_peer_id
        self._known: dict[str, list[str]] = {}  # peer id -> addresses
        self._names: dict[str, str] = {}  # service instance name -> peer id
        self._iterators: set[DiscoveredPeers] = set()
        self._closed = False
        #: Announcements ignored because :data:`MAX_PEERS` peers were known.
        self.ignored = 0

    def discovered(self) -> DiscoveredPeers:
        iterator = DiscoveredPeers(self, self._known)
        if self._closed:
            iterator._end()
        else:
            self._iterators.add(iterator)
        return iterator

    def known(self) -> dict[str, list[str]]:
        """The peers known now (a copy)."""
        return {peer_id: list(addrs) for peer_id, addrs in self._known.items()}

    def found(self, name: str, peer: DiscoveredPeer) -> None:
        """Service ``name`` announces ``peer`` (new, or with new addresses)."""
        if self._closed or peer.peer_id == self._own or not peer.addrs:
            return
        old = self._names.get(name)
        if old is not None and old != peer.peer_id:
            self.removed(name)  # the instance now names another peer
        if peer.peer_id not in self._known and len(self._known) >= MAX_PEERS:
            self.ignored += 1
            log.debug("mDNS: %d peers known, ignoring %s", MAX_PEERS, peer.peer_id)
            return
        self._names[name] = peer.peer_id
        if self._known.get(peer.peer_id) == peer.addrs:
            return
        self._known[peer.peer_id] = list(peer.addrs)
        log.debug("mDNS: found %s at %s", peer.peer_id, peer.addrs)
        for iterator in self._iterators:
            iterator._offer(peer.peer_id, list(peer.addrs))

    def removed(self, name: str) -> None:
        """Service ``name`` is gone (a goodbye, or its record expired)."""
        peer_id = self._names.pop(name, None)
        if peer_id is None or peer_id in self._names.values():
            return
        del self._known[peer_id]
        log.debug("mDNS: %s left", peer_id)
        for iterator in self._iterators:
            iterator._forget(peer_id)

    def close(self) -> None:
        self._closed = True
        for iterator in self._iterators:
            iterator._end()
        self._iterators.clear()


# The zeroconf side, in zeroconf's threads and ours.


class _Listener(ServiceListener):
    """Called in zeroconf's browser thread: looks records up there, hands results to trio."""

    def __init__(self, discovery: Discovery, token: trio.lowlevel.TrioToken) -> None:
        self._discovery = discovery
        self._token = token

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        # An exception here would end zeroconf's browser thread, and with it discovery.
        try:
            info = zc.get_service_info(type_, name, timeout=_INFO_TIMEOUT_MS)
            peer = parse_txt(info.text) if info is not None and info.text else None
        except Exception as exc:
            log.debug("mDNS: cannot read %s: %r", name, exc)
            return
        if peer is None:
            log.debug("mDNS: %s announces no usable address", name)
            return
        self._to_trio(self._discovery.found, name, peer)

    update_service = add_service

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self._to_trio(self._discovery.removed, name)

    def _to_trio(self, fn: Callable[..., None], *args: Any) -> None:
        with suppress(trio.RunFinishedError):  # the trio run ended: nobody is listening
            self._token.run_sync_soon(fn, *args)


@dataclass
class _Zeroconf:
    """A started zeroconf: its instance (a thread), our service, and its browser (a thread)."""

    zeroconf: Zeroconf
    info: ServiceInfo | None = None
    browser: ServiceBrowser | None = None


def _start(
    interfaces: list[str] | InterfaceChoice, addrs: list[str], listener: _Listener
) -> _Zeroconf:
    """Blocking: start zeroconf, browse, announce (~0.45 s: two announcements 225 ms apart)."""
    try:
        zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    except Exception as exc:
        raise NetError(f"cannot start mDNS on {interfaces}: {exc}") from exc
    started = _Zeroconf(zc)
    try:
        started.browser = ServiceBrowser(zc, SERVICE_TYPE, listener=listener)
        instance = secrets.token_hex(16)
        ips = sorted({addr.split("/")[2] for addr in addrs})
        started.info = ServiceInfo(
            SERVICE_TYPE,
            f"{instance}.{SERVICE_TYPE}",
            port=int(addrs[0].split("/")[4]),
            properties=encode_txt(addrs),
            server=f"{instance}.local.",
            parsed_addresses=ips,
        )
        # No probing: the name is 128 random bits, and probing delays the first announcement
        # by ~1.2 s.
        zc.register_service(started.info, cooperating_responders=True)
    except BaseException as exc:
        _stop(started)
        if isinstance(exc, Exception):
            raise NetError(f"cannot announce on mDNS: {exc!r}") from exc
        raise
    return started


def _stop(started: _Zeroconf) -> None:
    """Blocking: stop browsing (joins its thread), say goodbye, stop zeroconf (joins its thread)."""
    if started.browser is not None:
        started.browser.cancel()
    started.zeroconf.close()  # unregisters our service: a goodbye to the LAN (~0.25 s)


@asynccontextmanager
async def run_mdns(peer_id: str, listen: list[str]) -> AsyncIterator[Discovery]:
    """Announce ``peer_id`` at the bound ``listen`` addresses and browse, for the block's duration.

    Raises :class:`NetError` if zeroconf cannot start (no usable interface, port 5353 refused).
    """
    addrs = announced_addrs(listen, peer_id, local_ips())
    if not addrs:
        raise NetError(f"nothing to announce on mDNS: no TCP address in {listen}")
    discovery = Discovery(peer_id)
    listener = _Listener(discovery, trio.lowlevel.current_trio_token())
    interfaces = mdns_interfaces(listen)
    started: _Zeroconf | None = None
    try:
        # Not abandoned on cancellation: what it starts is stopped below.
        started = await trio.to_thread.run_sync(_start, interfaces, addrs, listener)
        log.debug("mDNS: announcing %s on %s", addrs, interfaces)
        yield discovery
    finally:
        discovery.close()
        if started is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_stop, started)
