"""py-libp2p's service manager finds a task's parent from an index (gridnode.net.tasks), with the
answer its own walk of the task tree gives."""

import trio
from libp2p.tools.anyio_service import Service, background_trio_service

from gridnode.net.tasks import index_tasks
from gridnode.net.tasks import walk as WALK  # py-libp2p's own lookup


class Nested(Service):
    """Spawns tasks inside tasks; each records both lookups' answers and its own task."""

    def __init__(self, depth, answers, done):
        self.depth = depth
        self.answers = answers
        self.done = done

    async def run(self):
        self.manager.run_task(self.spawn, 0)
        await self.done.wait()

    async def spawn(self, level):
        current = trio.lowlevel.current_task()
        manager = self.manager
        self.answers.append((WALK(manager, current), manager._find_parent_task(current), level))
        if level < self.depth:
            for _ in range(3):
                manager.run_task(self.spawn, level + 1)
        await self.done.wait()


def test_the_index_answers_as_the_walk_does():
    index_tasks()
    index_tasks()  # installed once

    async def main():
        answers = []
        done = trio.Event()
        other_answers = []
        other_done = trio.Event()
        async with background_trio_service(Nested(3, answers, done)) as manager:
            async with background_trio_service(Nested(1, other_answers, other_done)) as other:
                with trio.fail_after(10):
                    while len(answers) < 1 + 3 + 9 + 27 or len(other_answers) < 4:
                        await trio.sleep(0.01)
                # From a task this manager did not start (this test's own): none, both ways.
                here = trio.lowlevel.current_task()
                assert WALK(manager, here) is None
                assert manager._find_parent_task(here) is None
                # A task of one manager is no parent in the other manager's tree.
                for walked, _indexed, _level in answers:
                    assert WALK(other, walked.trio_task) is None
                    assert other._find_parent_task(walked.trio_task) is None
                other_done.set()
            done.set()
        for walked, indexed, _level in answers + other_answers:
            assert walked is not None
            assert indexed is walked

    trio.run(main)
