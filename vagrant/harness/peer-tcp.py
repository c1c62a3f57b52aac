#!/usr/bin/env python3
"""The peer's TCP stream to the node, for the restart measurements.

Listens on the peer's address; the node connects and echoes every byte back (bash's /dev/tcp
and cat). The peer sends a 64-byte message every 2 ms for DURATION seconds and records when
each echo arrives. The longest gap between two echoes is the stream's stall: it covers both
directions through the node's switch, and any retransmission TCP needed.
It also reads the kernel's TCP_INFO of its socket after every send: the longest time the
node's kernel acknowledged nothing while data was outstanding (the network's stall, which the
guest's scheduling of the echoing process does not lengthen), and the retransmissions.
Usage: peer-tcp.py ADDRESS PORT DURATION OUT
"""
import socket
import struct
import sys
import threading
import time

addr, port, duration, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(1)
srv.settimeout(60)
conn, _ = srv.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
MSG = 64
received = []  # (time, bytes so far)
done = threading.Event()


def reader():
    total = 0
    conn.settimeout(1.0)
    while not done.is_set() or total < sent[0]:
        try:
            b = conn.recv(65536)
        except socket.timeout:
            if done.is_set():
                break
            continue
        if not b:
            break
        total += len(b)
        received.append((time.monotonic(), total))


sent = [0]


def tcp_info():
    """(bytes_acked, total_retrans, rto in ms) from struct tcp_info (linux/tcp.h)."""
    b = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 136)
    rto_us = struct.unpack_from("I", b, 8)[0]
    retrans = struct.unpack_from("I", b, 100)[0]
    acked = struct.unpack_from("Q", b, 120)[0]
    return acked, retrans, rto_us / 1000.0


ack_stall = 0.0
last_acked, retrans0, rto = tcp_info()
last_change = time.monotonic()
t = threading.Thread(target=reader)
t.start()
start = time.monotonic()
next_send = start
while time.monotonic() - start < duration:
    conn.sendall(b"x" * MSG)
    sent[0] += MSG
    acked, retrans, rto = tcp_info()
    now = time.monotonic()
    if acked != last_acked:
        last_acked, last_change = acked, now
    ack_stall = max(ack_stall, now - last_change)
    next_send += 0.002
    pause = next_send - time.monotonic()
    if pause > 0:
        time.sleep(pause)
done.set()
# Give the last echoes time to come back (a stalled stream may still be retransmitting).
t.join(timeout=10)
conn.close()
times = [start] + [r[0] for r in received]
stall = max((b - a for a, b in zip(times, times[1:])), default=float("nan"))
echoed = received[-1][1] if received else 0
with open(out, "w") as f:
    f.write(
        f"tcp: sent {sent[0]} bytes, echoed {echoed}, longest stall {stall * 1000:.0f} ms "
        f"(echo), ack_stall {ack_stall * 1000:.0f} ms, retransmits {retrans - retrans0}, "
        f"rto {rto:.0f} ms\n"
    )
