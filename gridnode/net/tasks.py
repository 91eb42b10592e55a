"""py-libp2p 0.8.1's service manager finds a task's parent in O(1), not by a walk of every task.

Each ``manager.run_task`` of py-libp2p's trio service manager (``TrioManager``) looks for the
running trio task's ``FunctionTask`` by walking the manager's whole task tree
(``_find_parent_task``), so spawning k tasks among n costs O(k x n). Pubsub spawns three tasks for
every topic a peer subscribes to: a node holding 1,000 databases (2,000 topics) spent minutes of
a core, 94% of its samples in that walk (py-spy), on each new connection (docs/benchmarks.md,
issue 21, item 4).

:func:`index_tasks` keeps a map from each started trio task to its ``FunctionTask`` and makes the
lookup read it. The answer is the walk's: the task found must belong to this manager's tree (its
root among the manager's root tasks), else there is none (a new root task), as before.
"""

from __future__ import annotations

import weakref
from typing import Any

import trio
from libp2p.tools.anyio_service import trio_manager, trio_tasks

__all__ = ["index_tasks", "walk"]

#: py-libp2p's own lookup, the walk (kept for the tests that compare the two).
walk = trio_manager.TrioManager._find_parent_task

#: trio task -> a weak reference to the FunctionTask it runs (an entry goes with either).
_BY_TRIO_TASK: weakref.WeakKeyDictionary[trio.lowlevel.Task, weakref.ref[Any]] = (
    weakref.WeakKeyDictionary()
)
_installed = False


def index_tasks() -> None:
    """Install the index (once per process; later calls do nothing)."""
    global _installed
    if _installed:
        return
    function_task: Any = trio_tasks.FunctionTask
    getter = function_task.trio_task.fget
    setter = function_task.trio_task.fset

    def set_trio_task(self: Any, value: trio.lowlevel.Task) -> None:
        setter(self, value)
        _BY_TRIO_TASK[value] = weakref.ref(self)

    def find_parent_task(self: Any, trio_task: trio.lowlevel.Task) -> Any:
        found = _BY_TRIO_TASK.get(trio_task)
        task = found() if found is not None else None
        if task is None:
            return None
        root = task
        for _ in range(10_000):  # a tree, not a cycle: the bound only guards against one
            if root.parent is None:
                break
            root = root.parent
        return task if root in self._root_tasks else None

    function_task.trio_task = property(getter, set_trio_task)
    setattr(trio_manager.TrioManager, "_find_parent_task", find_parent_task)  # noqa: B010
    _installed = True
