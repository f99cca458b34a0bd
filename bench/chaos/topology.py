"""The chaos harness's network: four namespaces made for one run and removed at its end.

    node a  --link1 (veth, direct)--  node b
    node a  --relay veth--  lb  --relay veth--  node b     (link2: through a UDP relay in lb)
    node a  --front veth--  lb  --front veth--  node b     (HAProxy, the client, the poller)

Link 1 is a plain wire; link 2 passes through a userspace relay (relay.py) in the lb namespace,
because this kernel has no tc qdiscs (no netem): the relay is where delay and reordering happen.
Loss is an nftables rule in each node's namespace. Every address lives inside these namespaces.
"""

import os
import subprocess

LINK_PORT = 7480
SERVICE_PORT = 8080
LB_PORT = 8000

# Addresses (private, and only ever inside this run's namespaces).
ADDR = {
    "link1": {"a": "10.77.1.1", "b": "10.77.1.2"},
    "relay": {"a": "10.77.2.1", "la": "10.77.2.2", "b": "10.77.3.1", "lb": "10.77.3.2"},
    "front": {"a": "10.77.4.2", "la": "10.77.4.1", "b": "10.77.5.2", "lb": "10.77.5.1"},
}


def run(*argv, check=True):
    """Runs one command (ip, nft, mount), returning its stdout; a failure names the command."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    if check and p.returncode != 0:
        why = p.stderr.strip() or "exit %d" % p.returncode
        raise RuntimeError("%s: %s" % (" ".join(argv), why))
    return p.stdout


class Topology:
    """Namespaces, veths, nftables tables and tmpfs mounts of one run; cleanup() undoes all."""

    def __init__(self, run_id):
        self.id = run_id
        self.ns = {"a": "vc%s-a" % run_id, "b": "vc%s-b" % run_id, "lb": "vc%s-lb" % run_id}
        self.made_ns = []
        self.mounts = []
        # Interface names as seen inside each namespace: (namespace key, ifname) per link end.
        self.ifaces = {
            "link1": {"a": "l1", "b": "l1"},
            "link2": {"a": "l2", "b": "l2"},  # the node end of the relay veth
        }

    def netns_path(self, key):
        return "/run/netns/" + self.ns[key]

    def ip(self, key, *args, check=True):
        return run("ip", "-n", self.ns[key], *args, check=check)

    def nft(self, key, script):
        p = subprocess.run(["nsenter", "--net=" + self.netns_path(key), "nft", "-f", "-"],
                           input=script, text=True, timeout=30, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise RuntimeError("nft in %s: %s" % (self.ns[key], p.stderr.strip()))

    def setup(self):
        for key in ("a", "b", "lb"):
            run("ip", "netns", "add", self.ns[key])
            self.made_ns.append(self.ns[key])
            self.ip(key, "link", "set", "lo", "up")
        A = ADDR
        # Link 1: a direct veth between the two nodes.
        self.veth("a", "l1", A["link1"]["a"], "b", "l1", A["link1"]["b"], 24)
        # Link 2: each node to the relay in lb.
        self.veth("a", "l2", A["relay"]["a"], "lb", "ra", A["relay"]["la"], 24)
        self.veth("b", "l2", A["relay"]["b"], "lb", "rb", A["relay"]["lb"], 24)
        # Front: each node to lb, for HAProxy, the client and the poller.
        self.veth("a", "fr", A["front"]["a"], "lb", "fa", A["front"]["la"], 24)
        self.veth("b", "fr", A["front"]["b"], "lb", "fb", A["front"]["lb"], 24)
        # Each node can reach the other's front address through lb (for a witness that asks
        # whether the peer's service answers).
        self.ip("a", "route", "add", "10.77.5.0/24", "via", A["front"]["la"])
        self.ip("b", "route", "add", "10.77.4.0/24", "via", A["front"]["lb"])
        subprocess.run(["nsenter", "--net=" + self.netns_path("lb"), "sysctl", "-qw",
                        "net.ipv4.ip_forward=1"], check=True, timeout=30)
        # Loss: one table per node, its chain empty until a fault adds a rule.
        for key in ("a", "b"):
            self.nft(key, "table inet chaos {\n"
                          " chain input { type filter hook input priority 0; }\n}\n")

    def veth(self, k1, n1, a1, k2, n2, a2, plen):
        run("ip", "link", "add", "vc%s%s" % (self.id, n1[:2]), "netns", self.ns[k1], "type", "veth",
            "peer", "name", "vc%s%s" % (self.id, n2[:2]), "netns", self.ns[k2])
        # Rename inside each namespace (the names are free there) to the short, stable names.
        self.ip(k1, "link", "set", "vc%s%s" % (self.id, n1[:2]), "name", n1)
        self.ip(k2, "link", "set", "vc%s%s" % (self.id, n2[:2]), "name", n2)
        self.ip(k1, "addr", "add", "%s/%d" % (a1, plen), "dev", n1)
        self.ip(k2, "addr", "add", "%s/%d" % (a2, plen), "dev", n2)
        self.ip(k1, "link", "set", n1, "up")
        self.ip(k2, "link", "set", n2, "up")

    # --- faults on the network -------------------------------------------------------------
    def link_set(self, link, node, up):
        self.ip(node, "link", "set", self.ifaces[link][node], "up" if up else "down")

    def loss(self, pct, links):
        """Drops pct% of the link datagrams arriving at each node on the given links."""
        for key in ("a", "b"):
            what = "drop" if pct >= 100 else "numgen random mod 100 < %d drop" % pct
            rules = "".join(" add rule inet chaos input iifname %s udp dport %d %s\n"
                            % (self.ifaces[l][key], LINK_PORT, what) for l in links)
            self.nft(key, "flush chain inet chaos input\n" + rules)

    def loss_clear(self):
        for key in ("a", "b"):
            self.nft(key, "flush chain inet chaos input\n")

    # --- state directories on small tmpfs mounts (to be made read-only) ---------------------
    def mount_state(self, path):
        os.makedirs(path, exist_ok=True)
        run("mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", path)
        self.mounts.append(path)

    def state_readonly(self, path, ro):
        run("mount", "-o", "remount," + ("ro" if ro else "rw"), path)

    # --- cleanup ----------------------------------------------------------------------------
    def processes_inside(self):
        """Pids of every process whose network namespace is one of this run's."""
        inodes = set()
        for name in self.made_ns:
            try:
                inodes.add(os.stat("/run/netns/" + name).st_ino)
            except OSError:
                pass
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                if os.stat("/proc/%s/ns/net" % d).st_ino in inodes:
                    pids.append(int(d))
            except OSError:
                pass
        return pids

    def cleanup(self):
        errors = []
        for pid in self.processes_inside():
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        for path in reversed(self.mounts):
            for _ in range(2):
                p = subprocess.run(["umount", path], stderr=subprocess.PIPE, text=True)
                if p.returncode == 0:
                    break
                subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)
        self.mounts = []
        for name in reversed(self.made_ns):
            p = subprocess.run(["ip", "netns", "del", name], stderr=subprocess.PIPE, text=True)
            if p.returncode != 0:
                errors.append("ip netns del %s: %s" % (name, p.stderr.strip()))
        self.made_ns = []
        return errors
