"""The reference lock server: Raft-replicated sessions, locks, fencing tokens and watches."""
