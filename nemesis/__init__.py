"""Faults injected into a cluster over SSH: partitions, kills, pauses, clock skew, a bad network.

Layout (docs/nemeses.md): ``spec`` parses and checks the test file's ``nemesis:`` list;
``schedule`` runs it (``NemesisRunner``) and heals at the end; one module per fault family
(``partition``, ``process``, ``clock``, ``netem``) with the pure ``shapes`` and ``targets``
beside them; ``heal`` repairs any cluster by hand; ``iptables`` and ``remote`` hold the shell the
faults share; ``shaper`` and ``clock_driver`` are stdlib-only programs shipped to nodes.
"""
