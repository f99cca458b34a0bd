"""The two nodes of a chaos run: their files, their supervisors, their status, the CLI.

Node a is the master, node b the standby. Each runs `vacataire run` inside its own network
namespace with one service, nginx, answering "served by node-X" on port 8080; an active-scope
content probe checks that page, and a node-scope memcheck stands for the node's own health.
"""

import json
import os
import signal
import subprocess
import time

from topology import ADDR, LINK_PORT, SERVICE_PORT

NGINX_CONF = """worker_processes 1; pid {d}/nginx.pid; error_log stderr;
events {{ worker_connections 256; }}
http {{ access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{ listen {port}; location / {{
    if (-f {d}/broken) {{ return 200 "broken\\n"; }}
    return 200 "served by {name}\\n"; }} }} }}
"""


class Node:
    def __init__(self, key, work, topo, bins, timing):
        self.key = key
        self.name = "node-" + key
        self.peer_key = "b" if key == "a" else "a"
        self.dir = os.path.join(work, key)
        self.state_dir = os.path.join(self.dir, "state")
        self.config = os.path.join(self.dir, "vacataire.json")
        self.log_path = os.path.join(self.dir, "supervisor.log")
        self.topo = topo
        self.bins = bins
        self.timing = timing
        self.proc = None       # the supervisor's Popen
        self.stopped = set()   # pids this harness has SIGSTOPped and not yet continued
        self.starts = 0
        self.unexpected_exits = []  # (monotonic time, status) of exits the harness did not cause

    def page(self):
        return "served by %s\n" % self.name

    def write_files(self, key_file, endpoints_port, witness):
        d = self.dir
        os.makedirs(os.path.join(d, "services.d", "web"), exist_ok=True)
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        os.chmod(d, 0o755)  # nginx workers (www-data) look for the "broken" file here
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(d=d, port=SERVICE_PORT, name=self.name))
        run = os.path.join(d, "services.d", "web", "run")
        with open(run, "w") as f:
            f.write("#!/bin/sh\nexec 2>&1\nexec nginx -c %s -g 'daemon off;'\n"
                    % os.path.join(d, "nginx.conf"))
        ready = os.path.join(d, "services.d", "web", "ready")
        with open(ready, "w") as f:
            f.write("#!/bin/bash\nexec 3<>/dev/tcp/127.0.0.1/%d\n" % SERVICE_PORT)
        os.chmod(run, 0o755)
        os.chmod(ready, 0o755)
        me, peer = self.key, self.peer_key
        links = [
            {"listen": "%s:%d" % (ADDR["link1"][me], LINK_PORT),
             "peer": "%s:%d" % (ADDR["link1"][peer], LINK_PORT)},
            {"listen": "%s:%d" % (ADDR["relay"][me], LINK_PORT),
             "peer": "%s:%d" % (ADDR["relay"]["l" + me], LINK_PORT)},
        ]
        t = self.timing
        cfg = {
            "node": {"name": self.name, "role": "master" if me == "a" else "standby",
                     "state_dir": self.state_dir},
            "services_dir": os.path.join(d, "services.d"),
            "control_socket": os.path.join(d, "control.sock"),
            "peer": {"name": "node-" + peer, "links": links, "key_file": key_file,
                     "heartbeat": t["heartbeat"], "dead_after": t["dead_after"]},
            "failover": {"startup_grace": t["startup_grace"]},
            "probes": {
                "page": {"exec": ["content", "--url", "http://127.0.0.1:%d/" % SERVICE_PORT,
                                  "--bytes", str(len(self.page())), "--timeout", "200ms"],
                         "interval": t["probe_interval"], "timeout": "500ms", "fall": 2,
                         "rise": 1, "scope": "active"},
                "memory": {"exec": ["memcheck", "--min-available", "1%"], "interval": "1s"},
            },
        }
        if witness == "peer-service":
            # Take over only while the peer's service does not answer (seen over the front
            # network, not the peer links); fence when it answers and the peer is unheard.
            url = "http://%s:%d/" % (ADDR["front"][peer], SERVICE_PORT)
            cfg["probes"]["peer-down"] = {
                "exec": ["/bin/sh", "-c", "curl -s -o /dev/null --max-time 0.3 %s && "
                         "{ echo the peer serves; exit 2; }; echo the peer does not serve" % url],
                "protocol": "exit", "interval": t["probe_interval"], "timeout": "1s",
                "fall": 1, "rise": 1, "critical": False}
            cfg["failover"]["witness"] = "peer-down"
        if endpoints_port:
            cfg["endpoints"] = {"http": "0.0.0.0:%d" % endpoints_port}
        with open(self.config, "w") as f:
            json.dump(cfg, f, indent=1)

    # --- the supervisor process ------------------------------------------------------------
    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["nsenter", "--net=" + self.topo.netns_path(self.key), self.bins["vacataire"], "run",
             "-c", self.config],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.starts += 1

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_exit(self, now):
        """Records an exit of the supervisor that the harness did not cause; returns True if so."""
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits.append((now, self.proc.returncode))
            self.proc = None
            return True
        return False

    def kill9(self):
        """kill -9 of the supervisor alone (its services are its own business, as under runit)."""
        if self.proc is None:
            return
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def signal(self, pid, sig):
        os.kill(pid, sig)
        if sig == signal.SIGSTOP:
            self.stopped.add(pid)
        elif sig == signal.SIGCONT:
            self.stopped.discard(pid)

    def terminate(self, deadline_s=15):
        for pid in list(self.stopped):
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        self.stopped.clear()
        if self.proc is None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except OSError:
            pass
        self.proc = None

    # --- status and commands ---------------------------------------------------------------
    def cli(self, *args, timeout=5):
        try:
            p = subprocess.run([self.bins["vacataire"], *args, "-c", self.config],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=timeout)
            return p.returncode, (p.stdout + p.stderr).strip()
        except subprocess.TimeoutExpired:
            return None, "timed out after %ss" % timeout

    def status(self, timeout=1.5):
        """The status document, or None when the supervisor does not answer in time."""
        rc, out = self.cli("status", "--json", timeout=timeout)
        if rc != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def pids(self, st):
        """Processes to kill, from a status document: {"linkd": pid, "probe:NAME": pid, ...}."""
        out = {}
        if self.proc is not None:
            out["supervisor"] = self.proc.pid
        if not st:
            return out
        lp = st.get("peer", {}).get("linkd_pid")
        if isinstance(lp, int) and lp > 0:
            out["linkd"] = lp
        for name, p in (st.get("probes") or {}).items():
            if isinstance(p, dict) and isinstance(p.get("pid"), int) and p["pid"] > 0:
                out["probe:" + name] = p["pid"]
        for name, s in (st.get("services") or {}).items():
            if isinstance(s, dict) and isinstance(s.get("pid"), int) and s["pid"] > 0:
                out["service:" + name] = s["pid"]
        return out

    def set_broken(self, broken):
        path = os.path.join(self.dir, "broken")
        if broken:
            open(path, "w").close()
        elif os.path.exists(path):
            os.unlink(path)


def wait_for(cond, deadline_s, step=0.05):
    """Polls cond() until it returns a true value or the deadline passes; returns that value."""
    end = time.monotonic() + deadline_s
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)
