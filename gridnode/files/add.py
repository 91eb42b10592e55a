"""Adding a file, a directory tree or stdin: UnixFS blocks built as the bytes are read
(:class:`crdt.unixfs.importer.FileImporter`, :class:`~crdt.unixfs.importer.DirectoryImporter`,
the profile IPIP-499 names), sent to the file store in batches, then pinned.

Where the blocks go is the CLI's endpoint (:class:`~gridnode.ops.RepoEndpoint` on the data
directory, or the running node's API): anything with ``files_begin``, ``files_put``,
``files_pin`` and ``files_end``. The importing itself (chunking, hashing, encoding) runs here, in
the caller's process; a running node only verifies and stores what it is sent.

Memory stays constant whatever the size: the file is read :data:`READ_BYTES` at a time, the
importer keeps at most ``max_links`` pending links per tree level, and blocks wait in memory
until :data:`BATCH_BYTES` of them go in one write (one transaction, one CAR to the node). The
blocks of an add are kept under a lease (safe from a concurrent ``gridnode gc``) until the root is
pinned.

A directory is added the way Kubo adds one: entries in name order, hidden names (a leading dot)
left out unless asked for, symbolic links kept as UnixFS symlinks (never followed), special files
(sockets, devices, FIFOs) skipped (each said), no mode or mtime.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from crdt.errors import UnixFSEncodeError
from crdt.ipld.cid import CID
from crdt.unixfs.importer import DirectoryImporter, FileImporter, import_symlink
from crdt.unixfs.profiles import DEFAULT_PROFILE, Profile, get_profile
from gridnode.errors import InvalidRequest

__all__ = ["BATCH_BYTES", "READ_BYTES", "Added", "BlockWriter", "add"]

#: Bytes read from a file at a time.
READ_BYTES: Final = 1 << 20
#: Bytes of blocks sent to the store in one write.
BATCH_BYTES: Final = 16 << 20

Block = tuple[CID, bytes]


class BlockWriter:
    """Blocks to the endpoint in batches of about :data:`BATCH_BYTES`, under ``lease``. A batch
    is written by a thread of its own while the next one is imported (hashing and writing release
    the GIL: the import and the disk work at once); at most one batch is being written and one
    filling, so memory stays at about two batches. Call :meth:`finish` at the end: it waits for
    the last write and raises its error, if any."""

    def __init__(
        self, endpoint: Any, lease: int | None, *, sent: Callable[[int], None] | None = None
    ) -> None:
        self.endpoint = endpoint
        self.lease = lease
        self._sent = sent
        self._pending: list[Block] = []
        self._size = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridnode-add")
        self._writing: Future[None] | None = None
        #: Blocks and bytes sent, and how many of them the store did not hold yet.
        self.blocks = 0
        self.bytes = 0
        self.new = 0

    def add(self, blocks: list[Block]) -> None:
        for block in blocks:
            self._pending.append(block)
            self._size += len(block[1])
        if self._size >= BATCH_BYTES:
            self.flush()

    def _write(self, pending: list[Block], size: int) -> None:
        answer = self.endpoint.files_put(pending, self.lease)
        self.blocks += len(pending)
        self.bytes += size
        self.new += int(answer.get("new", 0))
        if self._sent is not None:
            self._sent(size)

    def _wait(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def flush(self) -> None:
        """Hand the pending blocks to the writing thread (after the batch before them is
        written)."""
        if not self._pending:
            return
        pending, size = self._pending, self._size
        self._pending, self._size = [], 0
        self._wait()
        self._writing = self._pool.submit(self._write, pending, size)

    def finish(self) -> None:
        """Write what is pending and wait until every batch is written (raising a write's
        error)."""
        self.flush()
        self._wait()

    def close(self) -> None:
        """Wait for a write in flight (its error is the caller's to learn from :meth:`finish`),
        then stop the writing thread: nothing uses the endpoint behind the caller's back."""
        self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class Added:
    """What an add made: the root, the bytes of file data read, the Tsize of the DAG, and how
    many files and directories it holds; ``pinned``: the pin's name (``None``: not pinned)."""

    cid: CID
    size: int
    tsize: int
    files: int
    directories: int
    skipped: list[str]
    pinned: str | None
    blocks: int
    new_blocks: int

    def as_json(self) -> dict[str, Any]:
        return {
            "cid": self.cid,
            "size": self.size,
            "tsize": self.tsize,
            "files": self.files,
            "directories": self.directories,
            "skipped": self.skipped,
            "pinned": self.pinned,
            "blocks": self.blocks,
            "new_blocks": self.new_blocks,
        }


class _Adder:
    def __init__(
        self,
        writer: BlockWriter,
        profile: Profile,
        *,
        hidden: bool,
        read: Callable[[int], None] | None,
        skip: Callable[[str], None] | None,
    ) -> None:
        self.writer = writer
        self.profile = profile
        self.hidden = hidden
        self._read = read
        self._skip = skip
        self.size = 0
        self.files = 0
        self.directories = 0
        self.skipped: list[str] = []

    def stream(self, source: BinaryIO) -> tuple[CID, int]:
        """Import one stream to its end: its root CID and Tsize."""
        importer = FileImporter(self.profile)
        buffer = bytearray(READ_BYTES)
        view = memoryview(buffer)
        reader = getattr(source, "readinto", None)
        while True:
            if reader is not None:
                n = reader(view)
                if not n:
                    break
                chunk: bytes | memoryview = view[:n]
            else:
                chunk = source.read(READ_BYTES)
                if not chunk:
                    break
                n = len(chunk)
            self.writer.add(importer.write(chunk))
            self.size += n
            if self._read is not None:
                self._read(n)
        root = importer.close()
        self.writer.add(root.blocks)
        self.files += 1
        return root.cid, root.tsize

    def file(self, path: Path) -> tuple[CID, int]:
        with path.open("rb", buffering=0) as source:
            return self.stream(source)

    def skip(self, path: Path, why: str) -> None:
        self.skipped.append(str(path))
        if self._skip is not None:
            self._skip(f"{path}: {why}, skipped")

    def directory(self, path: Path) -> tuple[CID, int]:
        """A directory tree, depth first: each directory once all its entries are made."""
        importer = DirectoryImporter(self.profile)
        with os.scandir(path) as scan:
            entries = sorted(scan, key=lambda e: e.name.encode("utf-8", "surrogateescape"))
        for entry in entries:
            if entry.name.startswith(".") and not self.hidden:
                continue
            child = Path(entry.path)
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                # Kept as a link (a UnixFS symlink node), never followed: as Kubo does.
                try:
                    link = import_symlink(os.readlink(child), self.profile)
                except UnixFSEncodeError:
                    self.skip(child, "a symbolic link whose target is not UTF-8")
                    continue
                self.writer.add(link.blocks)
                cid, tsize = link.cid, link.tsize
            elif stat.S_ISDIR(mode):
                cid, tsize = self.directory(child)
            elif stat.S_ISREG(mode):
                cid, tsize = self.file(child)
            else:
                self.skip(child, "not a regular file or directory")
                continue
            try:
                importer.add(entry.name, cid, tsize)
            except UnixFSEncodeError:
                self.skip(child, "a name that is not UTF-8")
        root = importer.close()
        self.writer.add(root.blocks)
        self.directories += 1
        return root.cid, root.tsize


def add(
    endpoint: Any,
    source: str,
    *,
    profile: str | Profile = DEFAULT_PROFILE,
    recursive: bool = False,
    hidden: bool = False,
    pin: bool = True,
    name: str | None = None,
    read: Callable[[int], None] | None = None,
    skip: Callable[[str], None] | None = None,
    stdin: BinaryIO | None = None,
) -> Added:
    """Add ``source`` (a file, a directory with ``recursive``, or ``-`` for stdin) to the file
    store of ``endpoint`` and pin its root (as ``name``, default the CID) unless ``pin`` is
    false. ``read`` is told the bytes of file data as they are read, ``skip`` what is left out."""
    chosen = get_profile(profile)
    lease = endpoint.files_begin()
    writer = BlockWriter(endpoint, lease)
    try:
        adder = _Adder(writer, chosen, hidden=hidden, read=read, skip=skip)
        if source == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            cid, tsize = adder.stream(stream)
        else:
            path = Path(source)
            mode = path.stat().st_mode
            if stat.S_ISDIR(mode):
                if not recursive:
                    raise InvalidRequest(f"{path} is a directory: add it with -r")
                cid, tsize = adder.directory(path)
            elif stat.S_ISREG(mode):
                cid, tsize = adder.file(path)
            else:
                raise InvalidRequest(f"{path} is not a regular file or a directory")
        writer.finish()
        pinned = None
        if pin:
            pinned = endpoint.files_pin(cid, name, True)["name"]
    finally:
        writer.close()
        endpoint.files_end(lease)
    return Added(
        cid,
        adder.size,
        tsize,
        adder.files,
        adder.directories,
        adder.skipped,
        pinned,
        writer.blocks,
        writer.new,
    )
