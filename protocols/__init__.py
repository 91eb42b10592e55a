"""Wire formats and protocol state machines, sans-IO: bytes and messages in, messages and actions out."""
