"""JSON text <-> IPLD values, with the DAG-JSON conventions for links and bytes.

JSON has no links and no bytes, the IPLD data model has both. As in DAG-JSON
(https://ipld.io/specs/codecs/dag-json/spec/), a map whose only key is ``"/"`` stands for them:

- ``{"/": "bafy..."}`` is a link (a :class:`~crdt.ipld.cid.CID`);
- ``{"/": {"bytes": "<base64>"}}`` is bytes (standard alphabet; written unpadded, read with or
  without padding).

That form is reserved: on input any other map whose only key is ``"/"`` is refused, and an IPLD map
whose only key is ``"/"`` cannot be written as JSON. Maps with ``"/"`` among other keys are plain
maps. Integers stay integers and floats stay floats (``1`` and ``1.0`` differ, as in DAG-CBOR);
``NaN``, infinities, integers outside ``[-2**64, 2**64 - 1]``, duplicate keys, lone surrogates and
nesting deeper than :data:`MAX_DEPTH` are refused with :class:`InvalidJsonValue`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, Final

from crdt.errors import InvalidCID
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import DEFAULT_MAX_DEPTH
from gridnode.errors import InvalidJsonValue

__all__ = ["MAX_DEPTH", "InvalidJsonValue", "dumps", "parse", "to_ipld", "to_json"]

#: How deeply lists and maps may nest (the encoder's bound: the top-level container is depth 1).
MAX_DEPTH: Final = DEFAULT_MAX_DEPTH
_MIN_INT: Final = -(2**64)
_MAX_INT: Final = 2**64 - 1


def parse(text: str | bytes, what: str = "JSON") -> Any:
    """Parse JSON text and return it as an IPLD value (see :func:`to_ipld`).

    ``what`` names the text in error messages (``"VALUE_JSON"``, ``"stdin line 3"``, ...).
    """
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidJsonValue(
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except InvalidJsonValue as exc:
        raise InvalidJsonValue(f"{what}: {exc}") from None
    except RecursionError:
        raise InvalidJsonValue(f"{what}: nested deeper than {MAX_DEPTH}") from None
    except ValueError:  # an integer literal with more digits than Python will convert
        raise InvalidJsonValue(f"{what}: an integer outside [-2**64, 2**64 - 1]") from None
    try:
        return to_ipld(value)
    except InvalidJsonValue as exc:
        raise InvalidJsonValue(f"{what}: {exc}") from None


def dumps(value: Any, *, indent: int | None = None) -> str:
    """An IPLD value as JSON text (compact on one line unless ``indent`` is given)."""
    separators = (",", ":") if indent is None else (",", ": ")
    return json.dumps(to_json(value), ensure_ascii=False, indent=indent, separators=separators)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJsonValue(f"duplicate key {key!r} in an object")
            seen.add(key)
    return out


def _refuse_constant(name: str) -> Any:
    raise InvalidJsonValue(f"{name} is not a JSON number (IPLD has no NaN or infinities)")


def to_ipld(value: Any) -> Any:
    """A value as :func:`json.loads` returns it, as an IPLD value: links and bytes decoded."""
    return _to_ipld(value, MAX_DEPTH)


def _check_text(text: str, what: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJsonValue(f"{what} {text!r} is not valid Unicode (a lone surrogate)") from None
    return text


def _to_ipld(value: Any, depth: int) -> Any:
    t = type(value)
    if value is None or t is bool:
        return value
    if t is int:
        if not _MIN_INT <= value <= _MAX_INT:
            raise InvalidJsonValue(f"integer {value} is outside [-2**64, 2**64 - 1]")
        return value
    if t is float:
        if not math.isfinite(value):
            raise InvalidJsonValue("a number out of range for a 64-bit float")
        return value
    if t is str:
        return _check_text(value, "string")
    if t is list:
        if depth <= 0:
            raise InvalidJsonValue(f"nested deeper than {MAX_DEPTH}")
        return [_to_ipld(item, depth - 1) for item in value]
    if t is dict:
        if depth <= 0:
            raise InvalidJsonValue(f"nested deeper than {MAX_DEPTH}")
        if len(value) == 1 and "/" in value:
            return _reserved(value["/"])
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidJsonValue(f"map key {key!r} is not a string")
            out[_check_text(key, "map key")] = _to_ipld(item, depth - 1)
        return out
    raise InvalidJsonValue(f"a {t.__name__} is not a JSON value")


def _reserved(inner: Any) -> CID | bytes:
    """The link or bytes a ``{"/": inner}`` map stands for."""
    if type(inner) is str:
        try:
            return CID.parse(inner)
        except InvalidCID as exc:
            raise InvalidJsonValue(f'{{"/": {json.dumps(inner)}}} is not a link: {exc}') from None
    if type(inner) is dict and len(inner) == 1 and type(inner.get("bytes")) is str:
        text = inner["bytes"]
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidJsonValue(
                f'{{"/": {{"bytes": {json.dumps(text)}}}}} does not hold standard base64'
            ) from None
    raise InvalidJsonValue(
        'a map whose only key is "/" is a link {"/": "<cid>"} or bytes {"/": {"bytes": "<base64>"}}'
    )


def to_json(value: Any) -> Any:
    """An IPLD value as a value :func:`json.dumps` can write: links and bytes in DAG-JSON form."""
    return _to_json(value, MAX_DEPTH)


def _to_json(value: Any, depth: int) -> Any:
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return value
    if t is float:
        if not math.isfinite(value):
            raise InvalidJsonValue(f"{value} cannot be written as JSON")
        return value
    if t is CID:
        return {"/": str(value)}
    if t is bytes or t is bytearray or t is memoryview:
        return {"/": {"bytes": base64.b64encode(bytes(value)).decode("ascii").rstrip("=")}}
    if t is list or t is tuple:
        if depth <= 0:
            raise InvalidJsonValue(f"nested deeper than {MAX_DEPTH}")
        return [_to_json(item, depth - 1) for item in value]
    if t is dict:
        if depth <= 0:
            raise InvalidJsonValue(f"nested deeper than {MAX_DEPTH}")
        if len(value) == 1 and "/" in value:
            raise InvalidJsonValue(
                'a map whose only key is "/" cannot be written as DAG-JSON '
                "(it would read back as a link or bytes)"
            )
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidJsonValue(f"map key {key!r} is not a string")
            out[key] = _to_json(item, depth - 1)
        return out
    raise InvalidJsonValue(f"a {t.__name__} is not a value of the IPLD data model")
