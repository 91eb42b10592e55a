"""UnixFS (pure): the ``Data`` message of dag-pb file and directory nodes, the import profiles of
IPIP-499, the importer that turns bytes and directory entries into blocks byte-identical with
Kubo's, HAMT directories and the reader."""

from crdt.unixfs.data import DataType, UnixFSData, UnixTime, decode_data, encode_data
from crdt.unixfs.importer import (
    DirectoryImporter,
    DirectoryRoot,
    FileImporter,
    FileRoot,
    import_bytes,
    import_symlink,
)
from crdt.unixfs.profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "DataType",
    "DirectoryImporter",
    "DirectoryRoot",
    "FileImporter",
    "FileRoot",
    "Profile",
    "UnixFSData",
    "UnixTime",
    "decode_data",
    "encode_data",
    "get_profile",
    "import_bytes",
    "import_symlink",
]
