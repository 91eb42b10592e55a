"""py-libp2p's log records, demoted to DEBUG under ``gridnode.net.libp2p``.

py-libp2p reports routine events of a peer-to-peer network at WARNING and ERROR: a peer that hung
up during a handshake, a stream refused because we do not speak its protocol, a dial that failed,
a reset during shutdown. Its ``libp2p`` logger has no handler and does not propagate, so Python's
last-resort handler printed them all on stderr, next to the node's own messages. None of them is an
error of this node: a failure that matters reaches gridnode as an exception or a refused
connection, and gridnode reports it in its own words.

So, unless ``LIBP2P_DEBUG`` is set (then py-libp2p's own logging setup stays in charge, for
debugging py-libp2p itself), every record of the ``libp2p`` logger tree at WARNING or above is
re-logged at DEBUG on ``gridnode.net.libp2p``, with its original logger and level in the text.
Records below WARNING are not even created (py-libp2p logs at INFO for every stream closed). A
few py-libp2p modules log on the root logger (``logging.warning(...)``); a filter on the root
logger demotes those records, and only those (recognised by the file they come from), to DEBUG.
The loggers that were noisy in our tests are listed in docs/decisions.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final

__all__ = ["RELAY_LOGGER", "quiet_libp2p_logs"]

#: The logger that carries py-libp2p's records, all at DEBUG.
RELAY_LOGGER: Final = "gridnode.net.libp2p"

_relay = logging.getLogger(RELAY_LOGGER)


class _Relay(logging.Handler):
    """Re-log a py-libp2p record at DEBUG on :data:`RELAY_LOGGER`."""

    def emit(self, record: logging.LogRecord) -> None:
        if _relay.isEnabledFor(logging.DEBUG):
            _relay.debug("%s %s: %s", record.name, record.levelname, record.getMessage())


class _DemoteLibp2pRecords(logging.Filter):
    """On the root logger: py-libp2p's direct ``logging.warning(...)`` calls become DEBUG."""

    def __init__(self, package_dir: str) -> None:
        super().__init__()
        self._package_dir = package_dir

    def filter(self, record: logging.LogRecord) -> bool:
        if record.pathname.startswith(self._package_dir) and record.levelno > logging.DEBUG:
            record.levelno = logging.DEBUG
            record.levelname = logging.getLevelName(logging.DEBUG)
        return True


def quiet_libp2p_logs() -> None:
    """Route py-libp2p's records to DEBUG (idempotent; a no-op when ``LIBP2P_DEBUG`` is set)."""
    import libp2p  # its import runs libp2p.utils.logging.setup_logging(), which we then adjust

    if os.environ.get("LIBP2P_DEBUG"):
        return
    libp2p_logger = logging.getLogger("libp2p")
    if not any(isinstance(h, _Relay) for h in libp2p_logger.handlers):
        libp2p_logger.addHandler(_Relay())
    libp2p_logger.setLevel(logging.WARNING)
    libp2p_logger.propagate = False
    root = logging.getLogger()
    if not any(isinstance(f, _DemoteLibp2pRecords) for f in root.filters):
        root.addFilter(_DemoteLibp2pRecords(str(Path(libp2p.__file__).parent) + os.sep))
