"""A small client of Kubo's RPC API (``/api/v0``), enough to pin a database's blocks on an IPFS node.

Kubo (go-ipfs) serves its RPC API on ``127.0.0.1:5001`` by default; every call is a ``POST``.
Two are used (docs.ipfs.tech/reference/kubo/rpc):

* ``/api/v0/dag/import``: a CAR as ``multipart/form-data`` (field ``file``); answers one JSON
  object per line, ``{"Root": {"Cid": {"/": "<cid>"}, "PinErrorMsg": ""}}`` for each root;
* ``/api/v0/pin/add?arg=<cid>...``: recursive pins; answers ``{"Pins": ["<cid>", ...]}``.

Kubo's errors are a non-2xx status with ``{"Message", "Code", "Type": "error"}``. Every failure
here is a :class:`KuboError`: :class:`KuboUnreachable` when no answer came (refused, timed out),
:class:`KuboRefused` when Kubo answered with an error (its message and status kept). Why this and
not ipfshttpclient: docs/decisions.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from crdt.ipld.car import MAX_HEADER_BYTES, read_header
from crdt.ipld.cid import CID
from gridnode.errors import KuboError, KuboRefused, KuboUnreachable

__all__ = [
    "DEFAULT_KUBO",
    "KuboClient",
    "KuboError",
    "KuboRefused",
    "KuboUnreachable",
    "PinResult",
    "pin_car",
]

#: Where Kubo serves its RPC API by default.
DEFAULT_KUBO = "http://127.0.0.1:5001"


@dataclass
class PinResult:
    """What :func:`pin_car` did: the CAR's roots (imported) and what Kubo says it pinned."""

    roots: list[str]
    pinned: list[str]


class KuboClient:
    """Kubo's RPC API at ``url`` (e.g. ``http://127.0.0.1:5001``), over httpx."""

    def __init__(self, url: str = DEFAULT_KUBO, *, timeout: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KuboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(
        self, command: str, params: Sequence[tuple[str, str]], files: Any = None
    ) -> httpx.Response:
        url = f"{self.url}/api/v0/{command}"
        try:
            response = self._http.post(url, params=list(params), files=files)
        except httpx.TimeoutException as exc:
            raise KuboUnreachable(
                f"Kubo at {self.url} did not answer {command} in time ({exc})"
            ) from None
        except httpx.HTTPError as exc:
            raise KuboUnreachable(f"cannot reach Kubo's RPC API at {self.url}: {exc}") from None
        if response.status_code != 200:
            raise KuboRefused(
                f"Kubo refused {command} ({response.status_code}): {_message(response)}",
                response.status_code,
            )
        return response

    def version(self) -> str:
        """Kubo's version (``/api/v0/version``)."""
        answer = _json(self._post("version", []), "version")
        if type(answer) is not dict or type(answer.get("Version")) is not str:
            raise KuboRefused(f"version: unexpected answer {answer!r}")
        return str(answer["Version"])

    def dag_import(self, car: IO[bytes] | bytes, *, pin_roots: bool = False) -> list[str]:
        """Import a CAR; return the roots Kubo reports (a root it could not pin is an error)."""
        params = [("pin-roots", "true" if pin_roots else "false")]
        files = {"file": ("database.car", car, "application/vnd.ipld.car")}
        response = self._post("dag/import", params, files)
        roots = []
        for line in response.text.splitlines():
            if not line.strip():
                continue
            item = _parse(line, "dag/import")
            root = item.get("Root") if type(item) is dict else None
            if root is None:
                continue  # e.g. {"Stats": ...}
            try:
                cid = root["Cid"]["/"]
                error = root.get("PinErrorMsg", "")
            except (TypeError, KeyError):
                raise KuboRefused(f"dag/import: unexpected answer {line!r}") from None
            if error:
                raise KuboRefused(f"Kubo could not pin root {cid}: {error}")
            roots.append(str(cid))
        return roots

    def pin_add(self, cids: Sequence[str]) -> list[str]:
        """Pin ``cids`` recursively; return what Kubo says it pinned."""
        params = [("arg", c) for c in cids] + [("recursive", "true")]
        answer = _json(self._post("pin/add", params), "pin/add")
        pins = answer.get("Pins") if type(answer) is dict else None
        if type(pins) is not list or not all(type(p) is str for p in pins):
            raise KuboRefused(f"pin/add: unexpected answer {answer!r}")
        return list(pins)


def pin_car(client: KuboClient, path: Path) -> PinResult:
    """Import the CAR at ``path`` into Kubo and pin its roots (each recursively: a head pins its
    causal past and the manifest). Raises :class:`KuboError` if a root is not pinned."""
    with path.open("rb") as car:
        # The header is at most MAX_HEADER_BYTES after its varint length; the blocks stream.
        roots = [str(r) for r in read_header(car.read(MAX_HEADER_BYTES + 16)).roots]
        car.seek(0)
        client.dag_import(car)
    pinned = client.pin_add(roots)
    missing = [r for r in roots if r not in {str(CID.parse(p)) for p in pinned}]
    if missing:
        raise KuboRefused(f"Kubo did not pin {', '.join(missing)}")
    return PinResult(roots, pinned)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if type(body) is dict and type(body.get("Message")) is str:
        return str(body["Message"])
    return response.text.strip()[:500]


def _json(response: httpx.Response, command: str) -> Any:
    return _parse(response.text, command)


def _parse(text: str, command: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise KuboRefused(f"{command}: the answer is not JSON: {text[:200]!r}") from None
