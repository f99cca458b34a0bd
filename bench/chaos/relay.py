#!/usr/bin/env python3
"""Link 2's wire: a UDP relay between the two nodes, run in the lb namespace.

Each node's second link points at the relay's address on its side; the relay forwards every
datagram to the other node from its own address on that side, so each node sees its configured
peer address. The harness changes what the wire does by writing a JSON file and sending SIGHUP:
  {"delay_ms": D, "jitter_ms": J}      every datagram held D + uniform(0, J) ms (J > 0 reorders)
  {"flood": {"to": "a"|"b", "pps": N, "seconds": S, "spoof": true|false}}
      N datagrams a second for S seconds at that node's link port: copies of the last real
      datagram from its peer with the last byte flipped (a forged tag that costs a full HMAC
      check), sent from the peer's own address and port (spoof) or from another port.
It prints counters on SIGTERM and exits.
"""

import heapq
import json
import random
import select
import signal
import socket
import sys
import time


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def main():
    a_side, a_peer, b_side, b_peer, control = sys.argv[1:6]
    sa = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sa.bind(addr(a_side))  # faces node a: a sends here, a receives from here
    sb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sb.bind(addr(b_side))
    other = {sa: (sb, addr(b_peer)), sb: (sa, addr(a_peer))}
    loose = {"a": socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
             "b": socket.socket(socket.AF_INET, socket.SOCK_DGRAM)}
    loose["a"].bind((addr(a_side)[0], 0))
    loose["b"].bind((addr(b_side)[0], 0))
    rng = random.Random(int(sys.argv[6]) if len(sys.argv) > 6 else 0)
    conf = {"delay_ms": 0, "jitter_ms": 0}
    flood = None  # (to, pps, until, spoof, sent)
    last_from = {"a": None, "b": None}
    pending = []  # (due, seq, sock, data, dest)
    seq = 0
    counts = {"forwarded": 0, "delayed": 0, "flooded": 0}
    reload = [False]
    stop = [False]
    signal.signal(signal.SIGHUP, lambda *_: reload.__setitem__(0, True))
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    while not stop[0]:
        if reload[0]:
            reload[0] = False
            try:
                with open(control) as f:
                    c = json.load(f)
                conf["delay_ms"] = float(c.get("delay_ms", 0))
                conf["jitter_ms"] = float(c.get("jitter_ms", 0))
                fl = c.get("flood")
                if fl:
                    flood = [fl["to"], min(int(fl["pps"]), 50000),
                             time.monotonic() + min(float(fl["seconds"]), 10.0),
                             bool(fl.get("spoof", True)), 0, time.monotonic()]
            except (OSError, ValueError, KeyError) as e:
                print("relay: bad control file: %s" % e, file=sys.stderr, flush=True)
        now = time.monotonic()
        timeout = 0.05
        if pending:
            timeout = min(timeout, max(0.0, pending[0][0] - now))
        if flood:
            timeout = min(timeout, 0.001)
        try:
            ready, _, _ = select.select([sa, sb], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for s in ready:
            for _ in range(64):
                try:
                    data, src = s.recvfrom(65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                out, dest = other[s]
                last_from["a" if s is sa else "b"] = data
                d = conf["delay_ms"] + rng.uniform(0, conf["jitter_ms"])
                if d <= 0:
                    try:
                        out.sendto(data, dest)
                        counts["forwarded"] += 1
                    except OSError:
                        pass  # the node's end is down: the wire drops it
                else:
                    seq += 1
                    heapq.heappush(pending, (now + d / 1000.0, seq, out, data, dest))
        while pending and pending[0][0] <= now:
            _, _, out, data, dest = heapq.heappop(pending)
            try:
                out.sendto(data, dest)
                counts["delayed"] += 1
            except OSError:
                pass
        if flood:
            to, pps, until, spoof, sent, start = flood
            if now >= until:
                flood = None
            else:
                due = int((now - start) * pps) - sent
                # The victim's peer is the other node: forge what that peer sends.
                sample = last_from["b" if to == "a" else "a"] or b"{}"
                sock = (sa if to == "a" else sb) if spoof else loose[to]
                dest = addr(a_peer) if to == "a" else addr(b_peer)
                for _ in range(min(due, 2000)):
                    forged = sample[:-1] + bytes([sample[-1] ^ 0x5A]) if sample else b"x"
                    try:
                        sock.sendto(forged, dest)
                    except OSError:
                        pass
                    flood[4] += 1
                    counts["flooded"] += 1
    print("relay: " + json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
