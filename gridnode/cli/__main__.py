"""``python -m gridnode.cli``: the ``gridnode`` command, as the console script runs it."""

from gridnode.cli import main

main()
