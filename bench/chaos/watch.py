#!/usr/bin/env python3
"""The harness's eyes, run in the lb namespace. Times are CLOCK_MONOTONIC seconds, which every
namespace shares, so the harness can line them up with its faults.

  watch.py poll INTERVAL_MS TIMEOUT_MS OUT a=HOST:PORT b=HOST:PORT
      Every INTERVAL_MS asks both nodes' services for / at once; writes a line "T A B" (1 when
      that node answered 200) whenever the pair of answers changes, and "# T ROUNDS MAXGAP_MS"
      once a second (how many rounds ran, the longest time between two rounds).
  watch.py client INTERVAL_MS OUT HOST:PORT
      Sends GET / through the load balancer every INTERVAL_MS, one at a time (1 s timeout);
      writes "T ok NODE" when the answering node changes, "T fail REASON" for each failure,
      and "# T SENT FAILED" once a second.
"""

import errno
import selectors
import socket
import sys
import time


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


REQ = b"GET / HTTP/1.0\r\nHost: chaos\r\n\r\n"


class Fetch:
    """One non-blocking HTTP/1.0 GET; done when the peer closes, fails, or time runs out."""

    def __init__(self, sel, target):
        self.buf = b""
        self.done = False
        self.error = ""
        self.sel = sel
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.setblocking(False)
        self.sent = False
        try:
            self.s.connect(target)
        except BlockingIOError:
            pass
        except OSError as e:
            self.finish(errno.errorcode.get(e.errno, str(e)))
            return
        sel.register(self.s, selectors.EVENT_WRITE, self)

    def step(self):
        try:
            if not self.sent:
                err = self.s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    return self.finish(errno.errorcode.get(err, str(err)))
                self.s.send(REQ)
                self.sent = True
                self.sel.modify(self.s, selectors.EVENT_READ, self)
                return
            chunk = self.s.recv(4096)
            if not chunk:
                return self.finish("")
            self.buf += chunk
        except OSError as e:
            self.finish(errno.errorcode.get(e.errno, str(e)))

    def finish(self, error):
        if self.done:
            return
        self.done = True
        self.error = error
        try:
            self.sel.unregister(self.s)
        except (KeyError, ValueError):
            pass
        self.s.close()

    def ok(self):
        return self.done and not self.error and self.buf.startswith(b"HTTP/1.") and \
            self.buf[9:12] == b"200"

    def body(self):
        i = self.buf.find(b"\r\n\r\n")
        return self.buf[i + 4:].decode(errors="replace").strip() if i >= 0 else ""


def run_all(fetches, sel, deadline):
    while not all(f.done for f in fetches):
        left = deadline - time.monotonic()
        if left <= 0:
            for f in fetches:
                f.finish("timeout")
            break
        for key, _ in sel.select(left):
            key.data.step()


def poll(interval_ms, timeout_ms, out, targets):
    names = [t.split("=", 1)[0] for t in targets]
    dests = [addr(t.split("=", 1)[1]) for t in targets]
    sel = selectors.DefaultSelector()
    f = open(out, "w", buffering=1)
    last = None
    rounds, maxgap, prev, tick = 0, 0.0, time.monotonic(), time.monotonic()
    period = interval_ms / 1000.0
    while True:
        t0 = time.monotonic()
        fetches = [Fetch(sel, d) for d in dests]
        run_all(fetches, sel, t0 + timeout_ms / 1000.0)
        state = tuple(1 if x.ok() else 0 for x in fetches)
        if state != last:
            f.write("%.6f %s\n" % (t0, " ".join(map(str, state))))
            last = state
        rounds += 1
        maxgap = max(maxgap, t0 - prev)
        prev = t0
        if t0 - tick >= 1.0:
            f.write("# %.6f %d %.1f\n" % (t0, rounds, maxgap * 1000))
            rounds, maxgap, tick = 0, 0.0, t0
        time.sleep(max(0.0, t0 + period - time.monotonic()))


def client(interval_ms, out, target):
    dest = addr(target)
    sel = selectors.DefaultSelector()
    f = open(out, "w", buffering=1)
    last, sent, failed, tick = None, 0, 0, time.monotonic()
    period = interval_ms / 1000.0
    while True:
        t0 = time.monotonic()
        fe = Fetch(sel, dest)
        run_all([fe], sel, t0 + 1.0)
        sent += 1
        if fe.ok():
            node = fe.body().split()[-1] if fe.body() else "?"
            if node != last:
                f.write("%.6f ok %s\n" % (t0, node))
                last = node
        else:
            failed += 1
            reason = fe.error or (fe.buf[9:12].decode(errors="replace") if fe.buf else "empty")
            f.write("%.6f fail %s\n" % (t0, reason))
            last = None
        if t0 - tick >= 1.0:
            f.write("# %.6f %d %d\n" % (t0, sent, failed))
            tick = t0
        time.sleep(max(0.0, t0 + period - time.monotonic()))


if __name__ == "__main__":
    if sys.argv[1] == "poll":
        poll(float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5:])
    else:
        client(float(sys.argv[2]), sys.argv[3], sys.argv[4])
