"""One chaos run: sets up the namespaces, the pair, the relay, HAProxy and the watchers;
samples both nodes' status; waits for the pair to settle; tears everything down."""

import json
import os
import signal
import subprocess
import threading
import time

from pair import Node, wait_for
from topology import ADDR, LB_PORT, LINK_PORT, SERVICE_PORT, Topology

HAPROXY_CFG = """defaults
  mode http
  option redispatch
  retries 2
  timeout connect 500ms
  timeout client 5s
  timeout server 5s
frontend fe
  bind 127.0.0.1:{lb_port}
  default_backend be
backend be
{check_opt}
  server node-a {a}:{port} check inter 100ms fall 1 rise 1{check_port}
  server node-b {b}:{port} check inter 100ms fall 1 rise 1{check_port}
"""


class Tail:
    """Reads the lines a watcher appends to its file, as they come."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.rest = ""
        self.lines = []

    def read(self):
        try:
            with open(self.path) as f:
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except OSError:
            return
        data = self.rest + data
        parts = data.split("\n")
        self.rest = parts.pop()
        self.lines.extend(p for p in parts if p)


class Run:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.lock = threading.RLock()
        self.topo = Topology(str(os.getpid() % 100000))
        timing = {"heartbeat": args.heartbeat, "dead_after": args.dead_after,
                  "startup_grace": args.startup_grace, "probe_interval": args.probe_interval}
        self.nodes = {k: Node(k, work, self.topo, args.bins, timing) for k in ("a", "b")}
        self.procs = []  # (name, Popen) of the helpers in the lb namespace
        self.relay = None
        self.samples = []  # (t, key, state or None, epoch, healthy)
        self.latest = {"a": None, "b": None}
        self.sample_t = {}
        self.breaks = []
        self.stop_sampling = threading.Event()
        self.threads = []
        self.poll = Tail(os.path.join(work, "poll.log"))
        self.client = Tail(os.path.join(work, "client.log"))
        self.current_fault = "start-up"
        self.dead_after_s = args.dead_after_s

    # --- set-up ------------------------------------------------------------------------------
    def lb_spawn(self, name, argv):
        log = open(os.path.join(self.work, name + ".out"), "ab")
        p = subprocess.Popen(["nsenter", "--net=" + self.topo.netns_path("lb"), *argv],
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        log.close()
        self.procs.append((name, p))
        return p

    def setup(self):
        a = self.args
        self.topo.setup()
        key = os.path.join(self.work, "peer.key")
        subprocess.run([a.bins["vacataire"], "keygen", "--force", key], check=True,
                       stdout=subprocess.DEVNULL, timeout=30)
        for n in self.nodes.values():
            os.makedirs(n.dir, exist_ok=True)
            self.topo.mount_state(n.state_dir)
            n.write_files(key, a.endpoints_port, a.witness)
        here = os.path.dirname(os.path.abspath(__file__))
        self.relay_file = os.path.join(self.work, "relay.json")
        R = ADDR["relay"]
        self.relay = self.lb_spawn("relay", [
            "python3", os.path.join(here, "relay.py"),
            "%s:%d" % (R["la"], LINK_PORT), "%s:%d" % (R["a"], LINK_PORT),
            "%s:%d" % (R["lb"], LINK_PORT), "%s:%d" % (R["b"], LINK_PORT),
            self.relay_file, str(a.seed)])
        F = ADDR["front"]
        if a.lb_check == "tcp":
            opt, port = "", ""
        elif a.lb_check == "http":
            opt, port = "  option httpchk GET /", ""
        else:  # active[:PORT]: linkd's /active endpoint
            opt, port = "  option httpchk GET /active", " port %d" % a.endpoints_port
        with open(os.path.join(self.work, "haproxy.cfg"), "w") as f:
            f.write(HAPROXY_CFG.format(lb_port=LB_PORT, check_opt=opt, a=F["a"], b=F["b"],
                                       port=SERVICE_PORT, check_port=port))
        self.lb_spawn("haproxy", ["haproxy", "-db", "-f", os.path.join(self.work, "haproxy.cfg")])
        self.lb_spawn("poll", ["python3", os.path.join(here, "watch.py"), "poll",
                               str(a.poll_ms), str(a.poll_timeout_ms), self.poll.path,
                               "a=%s:%d" % (F["a"], SERVICE_PORT),
                               "b=%s:%d" % (F["b"], SERVICE_PORT)])
        self.lb_spawn("client", ["python3", os.path.join(here, "watch.py"), "client",
                                 str(a.client_ms), self.client.path, "127.0.0.1:%d" % LB_PORT])
        for n in self.nodes.values():
            n.start()
        for k in ("a", "b"):
            t = threading.Thread(target=self.sample_loop, args=(k,), daemon=True)
            t.start()
            self.threads.append(t)

    def relay_control(self, conf):
        tmp = self.relay_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(conf, f)
        os.rename(tmp, self.relay_file)
        self.relay.send_signal(signal.SIGHUP)

    # --- status ------------------------------------------------------------------------------
    def sample_loop(self, key):
        n = self.nodes[key]
        last_epoch = None
        while not self.stop_sampling.is_set():
            t = time.monotonic()
            with self.lock:
                if n.check_exit(t):
                    self.breaks.append({
                        "t": t, "fault": self.current_fault, "invariant": "supervisor-exit",
                        "detail": "%s's supervisor exited by itself (status %s); restarted"
                                  % (n.name, n.unexpected_exits[-1][1])})
                    n.start()
            st = n.status() if n.alive() else None
            node = (st or {}).get("node", {})
            state, epoch = node.get("state"), node.get("epoch")
            self.samples.append((t, key, state, epoch, node.get("healthy")))
            self.latest[key] = st
            self.sample_t[key] = t
            if isinstance(epoch, int):
                if last_epoch is not None and epoch < last_epoch:
                    self.breaks.append({"t": t, "fault": self.current_fault,
                                        "invariant": "epoch-decreased",
                                        "detail": "%s: epoch %d after %d" % (n.name, epoch,
                                                                            last_epoch)})
                last_epoch = epoch
            self.stop_sampling.wait(max(0.0, t + self.args.status_s - time.monotonic()))

    def last_sample_t(self, key):
        return self.sample_t.get(key, 0.0)

    def state_of(self, key):
        st = self.latest[key]
        return (st or {}).get("node", {}).get("state")

    def active_node(self):
        act = [n for k, n in self.nodes.items() if self.state_of(k) == "active"]
        return act[0] if len(act) == 1 else None

    def wait_node_state(self, n, states, deadline_s):
        return wait_for(lambda: self.state_of(n.key) if self.state_of(n.key) in states else None,
                        deadline_s)

    def serving_now(self):
        """(a, b) answering per the poller's last line, and how long ago it changed."""
        self.poll.read()
        for line in reversed(self.poll.lines):
            if not line.startswith("#"):
                t, a, b = line.split()
                return (int(a), int(b)), time.monotonic() - float(t)
        return None, 0.0

    def started_serving(self, key, t0, t1):
        """The first time in [t0, t1] the poller saw node key answer, or None."""
        self.poll.read()
        col = 1 if key == "a" else 2
        for line in self.poll.lines:
            if not line.startswith("#"):
                f = line.split()
                if t0 <= float(f[0]) <= t1 and f[col] == "1":
                    return float(f[0])
        return None

    def client_node(self):
        self.client.read()
        for line in reversed(self.client.lines):
            if not line.startswith("#"):
                parts = line.split()
                return parts[2] if parts[1] == "ok" else None
        return None

    # --- settling ----------------------------------------------------------------------------
    def settle(self, deadline_s):
        """Waits until exactly one node is active and healthy, the other passive and healthy,
        the poller has seen only the active node answer for a while, and the client goes through
        HAProxy to it. Recovers a failed node and ends maintenance on the way. Returns (ok, why,
        seconds until the settled state began)."""
        t0 = time.monotonic()
        end = time.monotonic() + deadline_s
        recovered = set()
        stable_since = None
        why = ""
        while time.monotonic() < end:
            states = {k: self.state_of(k) for k in self.nodes}
            for k, s in states.items():
                n = self.nodes[k]
                recovering = (self.latest[k] or {}).get("node", {}).get("recovering")
                if s == "failed" and not recovering and k not in recovered:
                    n.cli("recover")
                    recovered.add(k)
                elif s == "maintenance":
                    n.cli("maintenance", "off")
            healthy = {k: (self.latest[k] or {}).get("node", {}).get("healthy") for k in self.nodes}
            act = [k for k, s in states.items() if s == "active"]
            serving, since = self.serving_now()
            ok = (len(act) == 1 and states[self.nodes[act[0]].peer_key] == "passive"
                  and all(healthy.values()))
            if ok:
                want = (1, 0) if act[0] == "a" else (0, 1)
                ok = serving == want and since >= 0.3 and self.client_node() == "node-" + act[0]
            why = "states %s healthy %s poller %s client %s" % (
                states, healthy, serving, self.client_node())
            if ok:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= self.args.stable_s:
                    return True, why, stable_since - t0
            else:
                stable_since = None
            time.sleep(0.05)
        return False, why, time.monotonic() - t0

    def restart_pair(self):
        """After a pair that did not settle: both supervisors stopped (SIGTERM) and started
        again, so the run goes on; the failure itself is already recorded."""
        with self.lock:
            for n in self.nodes.values():
                n.terminate()
            for n in self.nodes.values():
                n.start()

    # --- tear-down ---------------------------------------------------------------------------
    def teardown(self):
        self.stop_sampling.set()
        for t in self.threads:
            t.join(timeout=5)
        with self.lock:
            for n in self.nodes.values():
                n.terminate()
        for name, p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        # Anything left in the namespaces (a service a killed supervisor left behind) dies with
        # them: found by namespace, killed by pid.
        return self.topo.cleanup()
