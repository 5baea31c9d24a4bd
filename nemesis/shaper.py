"""A userspace netem: delays, jitters, drops and reorders the packets iptables queues to it.

Why not ``tc qdisc ... netem``: kernels built without sch_netem (this project's CI VMs among them)
refuse it, while NFQUEUE comes with every netfilter build. iptables hands each packet for a faulted
peer to queue N (rule in our LOCKBENCH-NETEM chain, with --queue-bypass so a dead shaper lets
traffic through); this program holds the packet's verdict for ``delay ± jitter`` ms, drops it with
probability ``loss``, lets it overtake the held ones with probability ``reorder``, and with
probability ``duplicate`` sends a copy of it too (through a raw socket, marked so that the queue
rule lets the copy pass).

The file is stdlib only and self-contained: the nemesis ships its source to the node in the
command line (``python3 -c``), so nothing has to be installed there. It talks nfnetlink directly
(``include/uapi/linux/netfilter/nfnetlink_queue.h``). It ends by itself after ``seconds``, on
SIGTERM, or when its queue is unbound, letting every held packet through first.

Usage: python3 shaper.py MARKER QUEUE DELAY_MS JITTER_MS LOSS REORDER DUPLICATE SECONDS SEED
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQA_PAYLOAD = 10
NFQNL_COPY_META = 1
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN = 1
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NF_DROP = 0
NF_ACCEPT = 1
NLA_TYPE_MASK = 0x3FFF
# Held packets are bounded by the kernel queue (1024 by default); this only sizes our reads.
RECEIVE_BUFFER = 4 * 1024 * 1024
# Duplicates carry this firewall mark; the queue rule skips marked packets (nemesis.iptables).
DUPLICATE_MARK = 0x4C42
SO_MARK = 36
COPY_RANGE = 0xFFFF


class ShaperError(RuntimeError):
    """The kernel refused the queue binding (another listener, no permission, no NFQUEUE)."""


def _attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _message(kind: int, flags: int, queue: int, attributes: bytes, sequence: int) -> bytes:
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", queue) + attributes
    kind_code = (NFNL_SUBSYS_QUEUE << 8) | kind
    header = struct.pack("=IHHII", 16 + len(body), kind_code, flags, sequence, 0)
    return header + body


def _split_messages(data: bytes) -> list[tuple[int, bytes]]:
    """Netlink messages in one datagram as ``(type, payload after the header)``."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        out.append((kind, data[offset + 16 : offset + length]))
        offset += (length + 3) & ~3
    return out


def _attributes(payload: bytes) -> dict[int, bytes]:
    attributes: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, offset)
        if length < 4:
            break
        attributes[kind & NLA_TYPE_MASK] = payload[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return attributes


class Shaper:
    """Holds verdicts in a heap keyed by release time; one socket, one thread."""

    def __init__(
        self,
        queue: int,
        delay_ms: float,
        jitter_ms: float,
        loss: float,
        reorder: float,
        duplicate: float,
        rng: random.Random,
    ) -> None:
        self.queue = queue
        self.delay = delay_ms / 1000.0
        self.jitter = jitter_ms / 1000.0
        self.loss = loss
        self.reorder = reorder
        self.duplicate = duplicate
        self.rng = rng
        self.held: list[tuple[float, int, int, bytes | None]] = []
        self.sequence = 0
        self.counts = {"seen": 0, "dropped": 0, "reordered": 0, "delayed": 0, "duplicated": 0}
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock.bind((0, 0))
        self.raw: socket.socket | None = None
        if duplicate > 0:
            # IPPROTO_RAW implies IP_HDRINCL: the copied packet goes out as it is.
            self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.raw.setsockopt(socket.SOL_SOCKET, SO_MARK, DUPLICATE_MARK)

    def _request(self, attributes: bytes) -> None:
        self.sequence += 1
        self.sock.send(
            _message(
                NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, self.queue, attributes, self.sequence
            )
        )
        for kind, payload in _split_messages(self.sock.recv(65536)):
            if kind == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", payload)
                if code:
                    raise ShaperError(f"queue {self.queue}: {errno.errorcode.get(-code, code)}")

    def bind(self) -> None:
        self._request(_attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
        # Duplicating needs the packet itself; otherwise metadata is enough (and cheaper).
        mode = (COPY_RANGE, NFQNL_COPY_PACKET) if self.raw else (0, NFQNL_COPY_META)
        self._request(_attribute(NFQA_CFG_PARAMS, struct.pack("!IB", *mode)))
        fail_open = struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)
        self._request(_attribute(NFQA_CFG_MASK, fail_open) + _attribute(NFQA_CFG_FLAGS, fail_open))

    def unbind(self) -> None:
        with contextlib.suppress(OSError, ShaperError):
            self._request(_attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, 0)))

    def verdict(self, packet_id: int, verdict: int) -> None:
        self.sequence += 1
        attributes = _attribute(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
        self.sock.send(_message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, self.queue, attributes, 0))

    def send_copy(self, packet: bytes | None) -> None:
        if packet is None or self.raw is None or len(packet) < 20:
            return
        destination = socket.inet_ntoa(packet[16:20])
        with contextlib.suppress(OSError):  # a lost duplicate is still a faithful network
            self.raw.sendto(packet, (destination, 0))
            self.counts["duplicated"] += 1

    def on_packet(self, packet_id: int, now: float, packet: bytes | None) -> None:
        self.counts["seen"] += 1
        draw = self.rng.random()
        copy = packet if self.duplicate and self.rng.random() < self.duplicate else None
        if draw < self.loss:
            self.counts["dropped"] += 1
            self.verdict(packet_id, NF_DROP)
            self.send_copy(copy)
        elif draw < self.loss + self.reorder * (1.0 - self.loss) or self.delay <= 0:
            if self.delay > 0:
                self.counts["reordered"] += 1
            self.verdict(packet_id, NF_ACCEPT)
            self.send_copy(copy)
        else:
            self.counts["delayed"] += 1
            hold = max(0.0, self.delay + self.rng.uniform(-self.jitter, self.jitter))
            heapq.heappush(self.held, (now + hold, self.counts["seen"], packet_id, copy))

    def release_due(self, now: float) -> None:
        while self.held and self.held[0][0] <= now:
            _, _, packet_id, copy = heapq.heappop(self.held)
            self.verdict(packet_id, NF_ACCEPT)
            self.send_copy(copy)

    def release_all(self) -> None:
        while self.held:
            _, _, packet_id, _ = heapq.heappop(self.held)
            try:
                self.verdict(packet_id, NF_ACCEPT)
            except OSError:
                return

    def serve(self, seconds: float, stopping: list[bool]) -> None:
        deadline = time.monotonic() + seconds
        while not stopping and time.monotonic() < deadline:
            now = time.monotonic()
            wait = min(0.2, deadline - now, *(h[0] - now for h in self.held[:1]))
            ready, _, _ = select.select([self.sock], [], [], max(0.0, wait))
            if ready:
                try:
                    data = self.sock.recv(RECEIVE_BUFFER)
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:  # the kernel dropped some; keep going
                        continue
                    raise
                now = time.monotonic()
                for kind, payload in _split_messages(data):
                    if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                        attributes = _attributes(payload[4:])
                        header = attributes.get(NFQA_PACKET_HDR)
                        if header is not None:
                            packet_id = struct.unpack_from("!I", header)[0]
                            self.on_packet(packet_id, now, attributes.get(NFQA_PAYLOAD))
            self.release_due(time.monotonic())


def main(argv: list[str]) -> int:
    if len(argv) != 9:
        print(__doc__, file=sys.stderr)
        return 2
    _, queue, delay_ms, jitter_ms, loss, reorder, duplicate, seconds, seed = argv
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    shaper = Shaper(
        int(queue),
        float(delay_ms),
        float(jitter_ms),
        float(loss),
        float(reorder),
        float(duplicate),
        random.Random(int(seed)),
    )
    try:
        shaper.bind()
        print(f"shaper: queue {queue} bound", flush=True)
        shaper.serve(float(seconds), stopping)
    except ShaperError as exc:
        print(f"shaper: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        shaper.release_all()
        shaper.unbind()
        print(f"shaper: done {shaper.counts}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
