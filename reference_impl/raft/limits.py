"""Size limits shared by the core (what it sends) and the codec (what it accepts).

Named so a peer that sends something absurd is rejected by a rule with a name, not by a
MemoryError. The precedents: etcd caps a request at 1.5 MiB (``--max-request-bytes``) and a raft
message batch at 1 MiB (``MaxSizePerMsg``); we allow a little more per entry and per message because
a lock command is tiny and the cap only guards against garbage.
"""

from __future__ import annotations

MAX_NODE_ID_BYTES = 64
"""Node ids are short names such as "n1"."""

MAX_ENTRY_BYTES = 1 << 20
"""One proposal (one client command); etcd's default request cap is 1.5 MiB."""

MAX_APPEND_BYTES = 4 << 20
"""Payload bytes the leader packs into one AppendEntries before starting the next one."""

MAX_ENTRIES_PER_MESSAGE = 4096
"""Entries in one AppendEntries; RaftConfig.max_entries_per_append must not exceed it."""

MAX_CTX_BYTES = 256
"""A ReadIndex context is a request id, not a payload."""

MAX_SNAPSHOT_BYTES = 256 << 20
"""The lock service's state is small; a larger snapshot means something is wrong."""

MAX_MESSAGE_BYTES = MAX_SNAPSHOT_BYTES + (1 << 20)
"""One encoded message, i.e. one frame on the peer transport."""
