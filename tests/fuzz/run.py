"""The long fuzz run, on demand: every target (or those named) for N seconds each.

    python tests/fuzz/run.py --seconds 300                 # atheris if installed, else mutation
    python tests/fuzz/run.py --seconds 60 --target entry --target car
    python tests/fuzz/run.py --seconds 60 --engine mutate  # no atheris: the CI mutator, longer
    python tests/fuzz/run.py --seconds 600 --save          # keep new coverage in the corpus

With atheris (``pip install -e '.[fuzz]'``) each target runs in a child process under libFuzzer,
coverage-guided over the instrumented ``crdt`` and ``protocols`` packages, starting from
``tests/fuzz/corpus/<target>/``; inputs that find new coverage go to a scratch directory (or the
corpus with ``--save``), a crash to ``tests/fuzz/crashes/<target>-*``. The per-input time bound
is the harness's (5 s) and memory is capped at 2 GiB RSS. At the end it prints, per target, the
inputs tried, the crashes and the slowest input's time, and exits non-zero on any crash.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CRASHES = Path(__file__).parent / "crashes"
RSS_LIMIT_MB = 2048


def _atheris_child(name: str, seconds: int, stats_path: Path, corpus_dirs: list[str]) -> None:
    """Run one target under atheris until libFuzzer's time is up (it exits the process)."""
    import atheris

    with atheris.instrument_imports(include=["crdt", "protocols"]):
        from tests.fuzz import harness
        from tests.fuzz.targets import TARGETS
    from crdt.errors import GridnodeError

    target = TARGETS[name]
    state = {"inputs": 0, "slowest": 0.0, "written": 0.0}

    def write_stats() -> None:
        stats_path.write_text(json.dumps({"inputs": state["inputs"], "slowest": state["slowest"]}))
        state["written"] = time.monotonic()

    def one_input(data: bytes) -> None:
        start = time.perf_counter()
        try:
            target(data)
        except GridnodeError:
            pass
        finally:
            elapsed = time.perf_counter() - start
            state["inputs"] += 1
            if elapsed > state["slowest"]:
                state["slowest"] = elapsed
                write_stats()
            elif time.monotonic() - state["written"] > 1.0:
                write_stats()

    CRASHES.mkdir(exist_ok=True)
    args = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-timeout={int(harness.HANG_SECONDS)}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={harness.MAX_MUTATED}",
        f"-artifact_prefix={CRASHES}/{name}-",
        "-print_final_stats=1",
        *corpus_dirs,
    ]
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def _run_atheris(name: str, seconds: int, save: bool) -> dict[str, object]:
    from tests.fuzz.harness import CORPUS

    corpus = CORPUS / name
    corpus.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        stats_path = Path(scratch) / "stats.json"
        dirs = [str(corpus)] if save else [str(Path(scratch) / "new"), str(corpus)]
        if not save:
            Path(dirs[0]).mkdir()
        before = set(CRASHES.glob(f"{name}-*")) if CRASHES.exists() else set()
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                name,
                "--seconds",
                str(seconds),
                "--stats",
                str(stats_path),
                *dirs,
            ],
            capture_output=True,
            text=True,
            timeout=seconds * 3 + 120,
        )
        stats = (
            json.loads(stats_path.read_text())
            if stats_path.exists()
            else {"inputs": 0, "slowest": 0.0}
        )
        after = set(CRASHES.glob(f"{name}-*")) if CRASHES.exists() else set()
    crashes = sorted(str(p) for p in after - before)
    tail = child.stderr.strip().splitlines()[-12:]
    if child.returncode != 0 and not crashes:
        crashes = [f"exit status {child.returncode}"]
    return {**stats, "crashes": crashes, "log": tail if crashes else []}


def _run_mutate(name: str, seconds: int, save: bool) -> dict[str, object]:
    from tests.fuzz.harness import Mutator, check, load_corpus, run_inputs, save_input
    from tests.fuzz.targets import TARGETS

    corpus = load_corpus(name)
    stats = run_inputs(name, TARGETS[name], corpus)
    mutator = Mutator(corpus, int(time.time()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for data in mutator.inputs(500):
            check(name, TARGETS[name], data, stats)
    CRASHES.mkdir(exist_ok=True)
    paths = []
    for crash in stats.crashes:
        path = CRASHES / f"{name}-{abs(hash(crash.data)):x}"
        path.write_bytes(crash.data)
        paths.append(f"{path}: {crash.error.splitlines()[0]}")
        if save:
            save_input(name, crash.data)
    return {"inputs": stats.inputs, "slowest": stats.slowest, "crashes": paths, "log": []}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="seconds per target")
    parser.add_argument("--target", action="append", help="a target (repeatable); default: all")
    parser.add_argument("--engine", choices=["auto", "atheris", "mutate"], default="auto")
    parser.add_argument("--save", action="store_true", help="keep new inputs in the corpus")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        _atheris_child(args.child, args.seconds, Path(args.stats), rest)
        return 0

    from tests.fuzz.targets import TARGETS

    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            engine = "mutate"
        else:
            engine = "atheris"
    names = args.target or sorted(TARGETS)
    unknown = set(names) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    run = _run_atheris if engine == "atheris" else _run_mutate
    print(f"engine: {engine}, {args.seconds} s per target, {len(names)} targets", flush=True)
    total_inputs = total_crashes = 0
    slowest = 0.0
    for name in names:
        result = run(name, args.seconds, args.save)
        inputs, crashes = int(result["inputs"]), list(result["crashes"])  # type: ignore[call-overload]
        total_inputs += inputs
        total_crashes += len(crashes)
        slowest = max(slowest, float(result["slowest"]))  # type: ignore[arg-type]
        print(
            f"{name:14} {inputs:>10,} inputs  {len(crashes)} crashes  slowest {float(result['slowest']) * 1000:8.1f} ms",
            flush=True,
        )  # type: ignore[arg-type]
        for line in crashes + list(result["log"]):  # type: ignore[call-overload]
            print("    " + str(line))
    print(
        f"{'total':14} {total_inputs:>10,} inputs  {total_crashes} crashes  slowest {slowest * 1000:8.1f} ms"
    )
    return 1 if total_crashes else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
