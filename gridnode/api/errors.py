"""The local API's errors on the wire: which HTTP status answers which gridnode error, and back.

The node layer raises errors that say what went wrong (:mod:`gridnode.errors`, crdt's
:class:`~crdt.errors.InvalidOperation`); this module is the only place that turns them into HTTP
and HTTP into them again. Nowhere else under ``gridnode/`` is a status written.

- **Server side.** An error's status is that of the first class in :data:`STATUSES` it is an
  instance of, else 400: whatever the caller sent that the operations refused is the caller's
  fault. :class:`~gridnode.errors.StorageError` (a damaged block, a full disk, a file it cannot
  use) is the server's own fault and answers 500 *with its message*, which names the block or the
  file: the operator has something to act on, and the client is told it was not its request.
  The body is ``{"error": "<one line>"}``, plus ``"index"`` and ``"reason"`` for an invalid op.
- **The error's class travels** in the ``x-gridnode-error`` header (:data:`ERROR_HEADER`): one
  status is shared by several errors (409 is "not a writer" and "not a verb of this type"), and
  the client raises the same class the node did (:func:`error_of_answer`), so that the CLI
  prints the same line whether or not a node runs.

Refused here: HTTP-named error classes (``BadRequest``, ``Conflict``). The classes are the node
layer's; only their status lives here.
"""

from __future__ import annotations

from typing import Any, Final

from crdt.errors import GridnodeError, InvalidOperation, MissingDatabaseKey, Unauthorized
from gridnode.errors import (
    CorruptBlock,
    DagTooLarge,
    FeatureOff,
    FetchIncomplete,
    InvalidJsonValue,
    InvalidRequest,
    MissingBlock,
    NodeUnavailable,
    NotAcceptable,
    NotAWriter,
    NotFound,
    RangeNotSatisfiable,
    RequestTooLarge,
    StorageError,
    StorageFull,
    StorageLimitReached,
    TokenRefused,
    UnknownDatabase,
    UnknownPin,
    WrongStoreType,
)
from gridnode.ops import describe_error

__all__ = ["ERROR_HEADER", "STATUSES", "error_body", "error_of_answer", "status_of"]

#: The header naming the class of an error answer (the client raises that class again).
ERROR_HEADER: Final = "x-gridnode-error"

#: An error's HTTP status: the first class in this list it is an instance of (else 400).
STATUSES: Final[tuple[tuple[type[GridnodeError], int], ...]] = (
    (TokenRefused, 401),
    (NotFound, 404),
    (NotAcceptable, 406),
    (RangeNotSatisfiable, 416),
    (RequestTooLarge, 413),
    (DagTooLarge, 413),
    (FetchIncomplete, 404),
    (WrongStoreType, 409),
    (NotAWriter, 409),
    (Unauthorized, 409),
    (MissingDatabaseKey, 409),
    (FeatureOff, 409),
    (StorageLimitReached, 507),
    (StorageError, 500),
    (NodeUnavailable, 503),
)

#: The classes the client raises again by name (the ``x-gridnode-error`` header of an answer).
_BY_NAME: Final[dict[str, type[GridnodeError]]] = {
    cls.__name__: cls
    for cls in (
        InvalidRequest,
        RequestTooLarge,
        InvalidJsonValue,
        NotAcceptable,
        RangeNotSatisfiable,
        NotFound,
        UnknownDatabase,
        MissingBlock,
        UnknownPin,
        WrongStoreType,
        NotAWriter,
        FeatureOff,
        TokenRefused,
        NodeUnavailable,
        InvalidOperation,
        MissingDatabaseKey,
        StorageError,
        StorageFull,
        StorageLimitReached,
        CorruptBlock,
        FetchIncomplete,
        DagTooLarge,
    )
}

#: Without a known ``x-gridnode-error``: the class of an error answer by its status. (No 500: one
#: without the header is a bug in the node, not one of the node layer's errors.)
_BY_STATUS: Final[dict[int, type[GridnodeError]]] = {
    400: InvalidRequest,
    401: TokenRefused,
    404: NotFound,
    406: NotAcceptable,
    409: NotAWriter,
    413: RequestTooLarge,
    416: RangeNotSatisfiable,
    503: NodeUnavailable,
    507: StorageLimitReached,
}


def status_of(exc: GridnodeError) -> int:
    """The HTTP status answering ``exc``."""
    for cls, status in STATUSES:
        if isinstance(exc, cls):
            return status
    return 400


def error_body(exc: GridnodeError) -> dict[str, Any]:
    """The JSON body answering ``exc``: ``{"error"}``, and an invalid op's ``index`` and
    ``reason``."""
    body: dict[str, Any] = {"error": describe_error(exc)}
    if isinstance(exc, InvalidOperation) and exc.index is not None:
        body["index"] = exc.index
        body["reason"] = exc.reason
    return body


def error_of_answer(status: int, value: Any, name: str | None) -> GridnodeError:
    """The error an answer with ``status``, parsed body ``value`` and ``x-gridnode-error``
    ``name`` stands for: the node's own class where the header names a known one."""
    message = value.get("error") if isinstance(value, dict) else None
    text = message if isinstance(message, str) else f"HTTP {status}"
    if isinstance(value, dict) and type(value.get("index")) is int:
        index = value["index"]
        reason = str(value.get("reason", text))
        return InvalidOperation(f"ops[{index}]: {reason}", index=index, reason=reason)
    cls = _BY_NAME.get(name or "") or _BY_STATUS.get(status, GridnodeError)
    return cls(text)
