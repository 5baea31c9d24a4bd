"""Durable storage of the Raft log: a CRC'd write-ahead log plus atomic snapshot files."""

from reference_impl.storage.raft_storage import RaftStorage, SaveStats

__all__ = ["RaftStorage", "SaveStats"]
