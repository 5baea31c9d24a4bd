"""Peer-TLS certificates for benchmarks, made with the ``openssl`` command line tool.

A CA and one certificate per node naming the node id in a DNS subjectAltName (what lockd's peer
TLS checks), P-256 keys, valid for a day. The benchmark builds its own material rather than
borrowing the tests' certificate helper.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from reference_impl.server.config import PeerTlsConfig

DAYS = "1"


class OpensslMissing(RuntimeError):
    """The ``openssl`` tool is not installed."""


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise OpensslMissing("openssl not found: install it (Debian package openssl)")
    subprocess.run([binary, *args], check=True, capture_output=True)


def make_peer_certificates(directory: Path, node_ids: list[str]) -> dict[str, PeerTlsConfig]:
    """A fresh CA in ``directory`` and a ``peer_tls`` section for every node in ``node_ids``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl("req", "-x509", *curve, "-keyout", str(ca_key), "-out", str(ca_cert),
             "-days", DAYS, "-subj", "/CN=lockbench benchmark ca")  # fmt: skip
    configs = {}
    for node_id in node_ids:
        key, csr, cert = (directory / f"{node_id}{suffix}" for suffix in (".key", ".csr", ".crt"))
        _openssl("req", "-new", *curve, "-keyout", str(key), "-out", str(csr),
                 "-subj", f"/CN={node_id}")  # fmt: skip
        extensions = directory / f"{node_id}.ext"
        extensions.write_text(f"subjectAltName=DNS:{node_id}\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-days", DAYS, "-extfile", str(extensions),
                 "-out", str(cert))  # fmt: skip
        configs[node_id] = PeerTlsConfig(cert=cert, key=key, ca=ca_cert)
    return configs
