"""Mutual TLS for the Raft peer links: SSL contexts built from ``peer_tls`` (cert, key, ca).

What is verified (docs/reference-server.md, "Peer TLS"): a dialling node checks that the peer's
certificate chains to ``ca`` and names the peer's node id in a DNS subjectAltName (peers are
addressed by IP, so the node id, not the address, is the identity); a listening node requires a
client certificate that chains to ``ca`` and names some member. Both sides use TLS 1.3.

Every problem that would later show up as refused links is reported here, at start-up, before
anything listens: unreadable files, a key that does not match, and, through one in-memory
handshake of the node with itself, a certificate that ``ca`` did not sign or that does not name
this node.
"""

from __future__ import annotations

import ssl

from reference_impl.server.config import PeerTlsConfig, ServerConfigError
from reference_impl.server.peer_transport import PeerTlsContexts

SELF_CHECK_ROUNDS = 8
"""Flights of the in-memory self-check handshake; TLS 1.3 with client certificates needs 3."""


def peer_tls_contexts(config: PeerTlsConfig, node_id: str) -> PeerTlsContexts:
    """Server and client contexts for ``node_id``'s peer links, checked against each other."""
    for key in ("cert", "key", "ca"):
        path = getattr(config, key)
        try:
            path.read_bytes()
        except OSError as exc:
            raise ServerConfigError(f"peer_tls.{key}: cannot read {path}: {exc}") from exc
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the peer and its name
    server.verify_mode = ssl.CERT_REQUIRED
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        try:
            context.load_cert_chain(config.cert, config.key)
        except (OSError, ssl.SSLError) as exc:
            raise ServerConfigError(
                f"peer_tls.cert/key: cannot use {config.cert} with {config.key}: {exc}"
            ) from exc
        try:
            context.load_verify_locations(cafile=config.ca)
        except (OSError, ssl.SSLError) as exc:
            raise ServerConfigError(
                f"peer_tls.ca: {config.ca} holds no usable CA certificate: {exc}"
            ) from exc
    contexts = PeerTlsContexts(server=server, client=client)
    _handshake_with_itself(contexts, node_id, config)
    return contexts


def _handshake_with_itself(contexts: PeerTlsContexts, node_id: str, config: PeerTlsConfig) -> None:
    """Runs the handshake a peer would make with this node, in memory: the peers' verdict on
    this node's certificate, known before the first link is refused."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    dialler = contexts.client.wrap_bio(to_client, to_server, server_hostname=node_id)
    listener = contexts.server.wrap_bio(to_server, to_client, server_side=True)
    done: set[str] = set()
    try:
        for _ in range(SELF_CHECK_ROUNDS):
            for name, side in (("dialler", dialler), ("listener", listener)):
                if name in done:
                    continue
                try:
                    side.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
            if len(done) == 2:
                return
    except ssl.SSLError as exc:
        reason = exc.verify_message if isinstance(exc, ssl.SSLCertVerificationError) else exc
        raise ServerConfigError(
            f"peer_tls: this node's own certificate {config.cert} would be refused by its peers: "
            f"{str(reason).rstrip('.')}. It must be signed by peer_tls.ca ({config.ca}) and "
            f"name {node_id!r} in a DNS subjectAltName (e.g. openssl ... -addext "
            f"subjectAltName=DNS:{node_id})"
        ) from exc
    raise ServerConfigError(
        f"peer_tls: the self-check handshake of {config.cert} did not finish in "
        f"{SELF_CHECK_ROUNDS} rounds"
    )
