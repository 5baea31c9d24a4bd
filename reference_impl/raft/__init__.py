"""A sans-I/O Raft core (etcd-raft shape): ticks, messages and proposals in; Ready out."""
