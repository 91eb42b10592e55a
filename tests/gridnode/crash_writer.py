"""Writes to a keyvalue database forever, printing each acknowledged (durable) batch.

Run by test_crash.py, which kills it with SIGKILL at random moments:
    python crash_writer.py DATA_DIR ADDRESS BATCH
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gridnode.repo import Repo


def main() -> None:
    data_dir, address, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    repo = Repo(data_dir)
    db = repo.database(address)
    seq = len(db)
    while True:
        db.write_many([{"op": "put", "key": f"k{seq + i}", "value": seq + i} for i in range(batch)])
        seq += batch
        # Printed only after write_many returned, i.e. after COMMIT with synchronous=FULL.
        print(f"ack {seq}", flush=True)


if __name__ == "__main__":
    main()
