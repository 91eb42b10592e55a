"""Files and directories as UnixFS DAGs: the node's file store (:mod:`~gridnode.files.store`:
blocks, pins, gc), adding a path or stdin (:mod:`~gridnode.files.add`) and reading one back
(:mod:`~gridnode.files.export`: cat, get, ls over any block source)."""

from gridnode.files.store import FileStore, GcReport, Pin

__all__ = ["FileStore", "GcReport", "Pin"]
