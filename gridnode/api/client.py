"""The local API's client, and where the CLI works on a data directory: the running node, or the
directory itself.

A running node must be the only user of its SQLite file, so while it runs every other program,
the CLI included, reaches its databases through its API. :func:`open_endpoint` decides which:

- ``DATA_DIR/node.lock`` tells a running node from a stale ``api`` file: the node holds it
  exclusively for its whole life. If the lock can be held shared, no node runs: the command
  works on the directory itself (:class:`~gridnode.ops.RepoEndpoint`), holding the lock shared
  so that no node starts underneath it, and a stale ``api`` file is removed (with a warning).
- Otherwise a node runs: its :class:`ApiClient`, once it answers. A node that holds the lock and
  does not answer (starting, stopping) is waited for a few seconds, then
  :class:`~gridnode.errors.NodeUnavailable`: nothing writes behind a node's back.

:class:`ApiClient` and :class:`~gridnode.ops.RepoEndpoint` have the same methods and return the
same values (IPLD values: a link is a :class:`~crdt.ipld.cid.CID`, bytes are ``bytes``), so what
the CLI prints does not depend on whether a node runs. An error answer is raised again as the
node layer's class the node raised (:func:`gridnode.api.errors.error_of_answer`).

The client is blocking (``http.client``, one connection per request): the CLI is synchronous, and
a test on the node's trio loop calls it from a thread.

Refused here: retries (a refused or failed request is the caller's to judge) and writing an
export's file before the whole CAR came: it goes to ``FILE.tmp``, then is renamed.
"""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from crdt.errors import InvalidOperation
from crdt.ipld.car import car_v1_header_bytes
from crdt.ipld.cid import CID
from crdt.ipld.multiformats import encode_varint
from gridnode import datadir, jsonvalue, ops
from gridnode.api.asgi import MAX_CAR_BYTES
from gridnode.api.errors import ERROR_HEADER, error_of_answer
from gridnode.api.handlers import CAR_TYPE, DEFAULT_RESTORE_TIMEOUT
from gridnode.datadir import API_FILE
from gridnode.errors import InvalidRequest, NodeUnavailable, NotFound
from gridnode.ops import CreateRequest, RepoEndpoint, describe_error
from gridnode.repo import Repo

__all__ = ["ApiClient", "open_endpoint"]

#: Seconds ``POST /files/fetch`` may go without an answer (the node stops a fetch whose peers
#: send nothing well before this).
FETCH_TIMEOUT: Final = 24 * 3600.0
#: Seconds a restore request may take beyond its own timeout: dialling the peers given (10 s
#: each, at once), then verifying and joining what came.
_RESTORE_SLACK: Final = 300.0


def open_endpoint(
    data_dir: Path,
    open_repo: Callable[[], Repo],
    *,
    warn: Callable[[str], None],
    wait: float = 10.0,
) -> tuple[ApiClient | RepoEndpoint, Callable[[], None]]:
    """Where the CLI works on ``data_dir``: the running node's API if a node runs there, else the
    data directory itself (:class:`~gridnode.ops.RepoEndpoint` over ``open_repo()``), with a
    shared hold on ``DATA_DIR/node.lock`` so that no node starts meanwhile. Returns the endpoint
    and what to call when done.

    A ``DATA_DIR/api`` left by a node that crashed is removed (``warn`` says so). A node that
    holds the lock but does not answer (starting, stopping) is waited for up to ``wait``
    seconds, then :class:`~gridnode.errors.NodeUnavailable` is raised.
    """
    deadline = time.monotonic() + wait
    while True:
        hold = datadir.hold_shared(data_dir)
        if hold is not None:
            # No node runs (a node holds the lock exclusively while it runs).
            try:
                if (data_dir / API_FILE).exists():
                    datadir.remove_api_files(data_dir)
                    warn(
                        f"removed the stale {data_dir / API_FILE} (no node runs on {data_dir}); "
                        "working offline"
                    )
                repo = open_repo()
            except BaseException:
                hold.close()
                raise
            return RepoEndpoint(repo), _closing(repo, hold)
        client = ApiClient.from_data_dir(data_dir)
        if client is not None and client.answers():
            return client, lambda: None
        if time.monotonic() > deadline:
            raise NodeUnavailable(
                f"a node is running on {data_dir} but its API does not answer; "
                "try again when it has started (or stopped)"
            )
        time.sleep(0.05)


def _closing(repo: Repo, hold: datadir.SharedHold) -> Callable[[], None]:
    def done() -> None:
        repo.close()
        hold.close()

    return done


class ApiClient:
    """A blocking client of a node's local API (one connection per request)."""

    running: Final = True

    def __init__(self, url: str, token: str, *, timeout: float = 600.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise NodeUnavailable(f"not an API address: {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port
        self.timeout = timeout
        self._auth = f"Bearer {token}"

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> ApiClient | None:
        """The client of the node whose files are in ``data_dir``, or ``None`` if there are none."""
        found = datadir.api_files(data_dir)
        if found is None:
            return None
        url, token = found
        try:
            return cls(url, token)
        except NodeUnavailable:
            return None

    def answers(self) -> bool:
        """Whether the node answers with this token (raises
        :class:`~gridnode.errors.TokenRefused` if not)."""
        try:
            self._request("GET", "/", timeout=5.0)
        except NodeUnavailable:
            return False
        return True

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        body: bytes | list[bytes] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        sink: Callable[[http.client.HTTPResponse], Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        target = path + ("?" + urlencode(query) if query else "")
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        if isinstance(body, list):
            # Sent part by part, with its length (not chunked).
            headers["Content-Length"] = str(sum(len(part) for part in body))
        connection = http.client.HTTPConnection(
            self.host, self.port, timeout=timeout or self.timeout
        )
        try:
            try:
                connection.request(method, target, body=body, headers=headers)
                response = connection.getresponse()
            except (ConnectionError, OSError) as exc:
                raise NodeUnavailable(
                    f"the node at {self.url} does not answer: {describe_error(exc)}"
                ) from None
            if response.status < 300 and sink is not None:
                return sink(response)
            data = response.read()
        finally:
            connection.close()
        value = jsonvalue.parse(data, "the node's answer") if data.strip() else None
        if response.status >= 300:
            raise error_of_answer(response.status, value, response.getheader(ERROR_HEADER))
        return value

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._request("GET", path, params)

    def _post(self, path: str, value: Any) -> Any:
        return self._request("POST", path, body=jsonvalue.dumps(value).encode("utf-8"))

    # -- the RepoEndpoint methods, over HTTP --------------------------------------------------------

    def database(self, ref: str, *, digest: bool = False) -> dict[str, Any]:
        answer: dict[str, Any] = self._get(_db_path(ref), {"digest": "true" if digest else "false"})
        return answer

    def databases(self) -> list[dict[str, Any]]:
        return self._get("/db")["databases"]  # type: ignore[no-any-return]

    def create(self, request: CreateRequest) -> dict[str, Any]:
        return self._post("/db", request.to_json())  # type: ignore[no-any-return]

    def follow(self, address: str, *, snapshot: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"address": address}
        if not snapshot:
            body["snapshot"] = False
        return self._post("/follow", body)  # type: ignore[no-any-return]

    def snapshot_publish(self, ref: str) -> dict[str, Any]:
        """``POST /db/{ref}/snapshot``: publish a signed snapshot of the database now."""
        return self._post(_db_path(ref, "snapshot"), {})  # type: ignore[no-any-return]

    def reader(self, ref: str, action: str, did: str) -> dict[str, Any]:
        """``POST /db/{ref}/readers``: add or remove a reader of an encrypted database."""
        body = {"action": action, "did": did}
        return self._post(_db_path(ref, "readers"), body)  # type: ignore[no-any-return]

    def access(self, ref: str, action: str, role: str, did: str) -> dict[str, Any]:
        """``POST /db/{ref}/access``: grant or revoke an admin's or a writer's role."""
        body = {"action": action, "role": role, "did": did}
        return self._post(_db_path(ref, "access"), body)  # type: ignore[no-any-return]

    def snapshot_show(self, ref: str) -> dict[str, Any]:
        """``GET /db/{ref}/snapshot``: the snapshot published, and the one served from."""
        return self._get(_db_path(ref, "snapshot"))  # type: ignore[no-any-return]

    def unfollow(self, address: str) -> dict[str, Any]:
        return self._post("/unfollow", {"address": address})  # type: ignore[no-any-return]

    def orbitdb_follow(
        self, address: str, peers: Sequence[str] = (), *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """``POST /orbitdb/follow``: follow an OrbitDB database read-only."""
        body = {"address": address, "peers": list(peers), "timeout": timeout}
        return self._post("/orbitdb/follow", body)  # type: ignore[no-any-return]

    def orbitdb_unfollow(self, address: str) -> dict[str, Any]:
        """``POST /orbitdb/unfollow``: stop following it and drop its blocks."""
        return self._post("/orbitdb/unfollow", {"address": address})  # type: ignore[no-any-return]

    def orbitdb_list(self) -> dict[str, Any]:
        """``GET /orbitdb``: the OrbitDB databases followed and the follower's counters."""
        return self._get("/orbitdb")  # type: ignore[no-any-return]

    def orbitdb_all(self, address: str) -> dict[str, Any]:
        """``GET /orbitdb/{cid}/all``: OrbitDB's ``all()`` of a followed database."""
        cid = address.removeprefix("/orbitdb/")
        return self._get("/orbitdb/" + quote(cid, safe="") + "/all")  # type: ignore[no-any-return]

    def restore(
        self,
        roots: Sequence[str],
        peers: Sequence[str] = (),
        timeout: float = DEFAULT_RESTORE_TIMEOUT,
    ) -> dict[str, Any]:
        """``POST /db/restore``: the node fetches the database over bitswap, taking up to
        ``timeout`` seconds (and the time to dial the peers and to join what came), which this
        request waits for."""
        body = {"roots": list(roots), "peers": list(peers), "timeout": timeout}
        answer: dict[str, Any] = self._request(
            "POST",
            "/db/restore",
            body=jsonvalue.dumps(body).encode("utf-8"),
            timeout=max(self.timeout, timeout + _RESTORE_SLACK),
        )
        return answer

    def write(
        self, ref: str, payloads: Sequence[Any], labels: Sequence[str] | None = None
    ) -> dict[str, Any]:
        try:
            return self._post(_db_path(ref, "ops"), list(payloads))  # type: ignore[no-any-return]
        except InvalidOperation as exc:
            index = exc.index
            if labels is not None and index is not None and 0 <= index < len(labels):
                raise InvalidOperation(
                    f"{labels[index]}: {exc.reason}", index=index, reason=exc.reason
                ) from None
            raise

    def read(self, name: str, ref: str, **params: Any) -> dict[str, Any]:
        """The registered read ``name`` (:data:`gridnode.ops.READS`) on the database ``ref``:
        ``GET /db/{ref}/{name}``, each parameter written by its kind."""
        found = ops.READS.get(name)
        if found is None:
            raise NotFound(f"no read {name!r}")
        kinds = {p.name: p.kind for p in found.params}
        query: dict[str, Any] = {}
        for key, value in params.items():
            kind = kinds.get(key)
            if kind is None:
                raise InvalidRequest(f"'{name}' takes no parameter {key!r}")
            if value is None:
                continue
            if kind == "bool":
                if value:
                    query[key] = "true"
            elif kind == "json":
                query[key] = jsonvalue.dumps(value)
            else:
                query[key] = value
        return self._get(_db_path(ref, name), query)  # type: ignore[no-any-return]

    def export(self, ref: str, path: Path) -> dict[str, Any]:
        """Fetch the database as a CAR and write it to ``path`` (atomically, like offline): an
        error answer leaves no file."""

        def save(response: http.client.HTTPResponse) -> dict[str, Any]:
            tmp = path.with_name(path.name + ".tmp")
            try:
                with tmp.open("wb") as out:
                    try:
                        while chunk := response.read(1 << 20):
                            out.write(chunk)
                    except http.client.IncompleteRead:
                        # The node streams the CAR and cuts it off when it finds a damaged
                        # block (or stops) after the answer started: what came is not kept.
                        raise NodeUnavailable(
                            "the node cut the CAR off before its end (a damaged block, or it "
                            "stopped: its log says which); nothing was written"
                        ) from None
                    out.flush()
                    os.fsync(out.fileno())
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(path)
            return {
                "address": response.getheader("x-gridnode-address", ""),
                "file": str(path),
                "blocks": int(response.getheader("x-gridnode-blocks", "0")),
            }

        return self._request("GET", _db_path(ref, "car"), sink=save)  # type: ignore[no-any-return]

    def import_car(self, data: bytes | memoryview) -> dict[str, Any]:
        if len(data) > MAX_CAR_BYTES:
            raise InvalidRequest(
                f"the CAR is larger than a running node takes ({MAX_CAR_BYTES} bytes); "
                "stop the node and import it offline"
            )
        report: dict[str, Any] = self._request(
            "POST", "/import", body=bytes(data), content_type=CAR_TYPE
        )
        return report

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._get("/status")
        status["api"] = self.url
        return status

    def peers(self) -> dict[str, Any]:
        return self._get("/peers")  # type: ignore[no-any-return]

    def replicas(self, ref: str) -> dict[str, Any]:
        """``GET /db/{ref}/replicas``: who holds the database, as far as the node heard."""
        return self._get(_db_path(ref, "replicas"))  # type: ignore[no-any-return]

    # -- the file store (gridnode/api/files.py) ------------------------------------------------

    def files_put(self, blocks: Sequence[tuple[CID, bytes]], lease: int | None) -> dict[str, Any]:
        if not blocks:
            return {"blocks": 0, "new": 0}
        # The CAR in parts, each block sent as it is (no copy of the batch: memory stays at
        # the blocks the caller holds).
        parts = [car_v1_header_bytes([blocks[0][0]])]
        for cid, block in blocks:
            raw = cid.bytes
            parts += [encode_varint(len(raw) + len(block)) + raw, block]
        answer: dict[str, Any] = self._request(
            "POST", "/files/blocks", {"lease": lease}, body=parts, content_type=CAR_TYPE
        )
        return answer

    def files_block(self, cid: CID, *, peers: bool = False) -> bytes:
        """One block of the node's file store; ``peers``: asked of its peers if it lacks it."""

        def read(response: http.client.HTTPResponse) -> bytes:
            return response.read()

        path = f"/files/blocks/{cid}" + ("?peers=true" if peers else "")
        data: bytes = self._request("GET", path, sink=read)
        return data

    def files_fetch(self, cid: CID, pin: str | None = None) -> dict[str, Any]:
        """``POST /files/fetch``: the node fetches the whole DAG from its peers (returns when
        done: its progress)."""
        body: dict[str, Any] = {"cid": str(cid)}
        if pin is not None:
            body["pin"] = pin
        data = jsonvalue.dumps(body).encode("utf-8")
        # A large DAG takes as long as it takes; the node gives up on peers that stall.
        return self._request("POST", "/files/fetch", body=data, timeout=FETCH_TIMEOUT)  # type: ignore[no-any-return]

    def files_fetch_progress(self, cid: CID) -> dict[str, Any]:
        """``GET /files/fetch/{cid}``: how far that fetch is."""
        return self._get(f"/files/fetch/{cid}")  # type: ignore[no-any-return]

    def files_begin(self) -> int:
        return int(self._request("POST", "/files/leases")["lease"])

    def files_end(self, lease: int) -> None:
        self._request("POST", f"/files/leases/{int(lease)}/end")

    def files_pin(self, cid: CID, name: str | None, recursive: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"cid": str(cid), "recursive": recursive}
        if name is not None:
            body["name"] = name
        return self._post("/files/pins", body)  # type: ignore[no-any-return]

    def files_unpin(self, name_or_cid: str) -> dict[str, Any]:
        return self._post("/files/unpin", {"pin": name_or_cid})  # type: ignore[no-any-return]

    def files_pins(self) -> list[dict[str, Any]]:
        return self._get("/files/pins")["pins"]  # type: ignore[no-any-return]

    def files_gc(self) -> dict[str, Any]:
        return self._request("POST", "/files/gc")  # type: ignore[no-any-return]

    def files_usage(self) -> dict[str, Any]:
        return self._get("/files/usage")  # type: ignore[no-any-return]

    def request_json(self, method: str, path: str, value: Any = None) -> Any:
        """A raw request (for tests and scripts): ``value`` as the JSON body, the answer parsed."""
        body = None if value is None else jsonvalue.dumps(value).encode("utf-8")
        return self._request(method, path, body=body)


def _db_path(ref: str, *rest: str) -> str:
    if not ref:
        # "/db/" would be the listing of every database, not a database.
        raise InvalidRequest("give a database: /gridnode/<cid>, its CID or its name")
    return "/".join(["/db", quote(ref, safe=""), *rest])
