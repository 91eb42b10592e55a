"""IPLD for gridnode: strict DAG-CBOR, CIDs, multiformats and CAR files. Pure: bytes in, values out."""

from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import DEFAULT_MAX_DEPTH, decode, decode_strict, encode

__all__ = ["CID", "DEFAULT_MAX_DEPTH", "decode", "decode_strict", "encode"]
