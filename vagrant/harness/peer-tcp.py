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
import select
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
# Generous: a send blocks while the node's window is full, which is a stall to measure.
conn.settimeout(30)
MSG = 64
received = []  # (time, bytes so far)
done = threading.Event()


def reader():
    # select, not a socket timeout: a timeout would also apply to the sender's sendall, which
    # then fails as soon as the node's window stays full for a second (a starved echo process
    # in a slow guest), and the measurement would be lost instead of recorded as a stall.
    total = 0
    while not done.is_set() or total < sent[0]:
        ready, _, _ = select.select([conn], [], [], 1.0)
        if not ready:
            if done.is_set():
                break
            continue
        try:
            b = conn.recv(65536)
        except OSError:
            break
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
error = ""
retrans = retrans0
try:
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
except OSError as e:
    # The stream broke (reset by the node, or its window stayed closed past the send timeout):
    # say so in the result instead of dying without one.
    error = f", broken after {time.monotonic() - start:.1f} s: {e}"
    ack_stall = max(ack_stall, time.monotonic() - last_change)
finally:
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
        f"rto {rto:.0f} ms{error}\n"
    )
