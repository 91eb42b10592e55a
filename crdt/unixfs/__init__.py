"""UnixFS (pure): the ``Data`` message of dag-pb file and directory nodes, the import profiles and
the importer that turns bytes and directory entries into blocks byte-identical with Kubo's."""

from crdt.unixfs.data import DataType, UnixFSData, UnixTime, decode_data, encode_data

__all__ = ["DataType", "UnixFSData", "UnixTime", "decode_data", "encode_data"]
