"""The fault kinds. Each injects one fault, holds it for a random (seeded) time, heals it, and
returns what it did; the harness then waits for the pair to settle. Targets are found from
`vacataire status --json` (pids of linkd, probes, services) or the harness's own Popen (the
supervisor), never by process name."""

import os
import signal
import time

from pair import wait_for


def stall(rng, lo=0.05, hi=5.0):
    """A duration between lo and hi seconds, log-uniform: short stalls as often as long ones."""
    return round(lo * (hi / lo) ** rng.random(), 3)


def pick_node(run, rng, prefer_active=0.6):
    """The active node with probability prefer_active (the interesting one), else the other."""
    act = run.active_node()
    if act is None:
        return rng.choice(list(run.nodes.values()))
    if rng.random() < prefer_active:
        return act
    return run.nodes[act.peer_key]


def kill9(what):
    def fault(run, rng):
        # Services (and active-scope probes) run on the active node only.
        n = pick_node(run, rng, prefer_active=0.9 if what == "service" else 0.6)
        state = run.state_of(n.key)
        if what == "supervisor":
            with run.lock:
                n.kill9()
            # Restarted as a service manager would (Restart=always, RestartSec 0.1-1 s).
            delay = round(rng.uniform(0.1, 1.0), 3)
            time.sleep(delay)
            with run.lock:
                n.start()
            return {"node": n.name, "state": state, "restart_after_s": delay}
        pids = n.pids(n.status())
        names = sorted(k for k in pids if k == what or k.startswith(what + ":"))
        if not names:
            return {"node": n.name, "skipped": "no %s pid in status" % what}
        target = rng.choice(names)
        try:
            n.signal(pids[target], signal.SIGKILL)
        except OSError as e:
            return {"node": n.name, "target": target, "skipped": str(e)}
        return {"node": n.name, "target": target, "pid": pids[target]}
    return fault


def sigstop(what):
    def fault(run, rng):
        n = pick_node(run, rng)
        state = run.state_of(n.key)
        pid = n.proc.pid if what == "supervisor" and n.proc else n.pids(n.status()).get(what)
        if not pid:
            return {"node": n.name, "skipped": "no %s pid" % what}
        d = stall(rng)
        # Half the time the active node's service dies during a supervisor's stall: the frozen
        # node can neither restart it nor hand over, so the peer must notice the silence.
        victim = None
        if what == "supervisor" and state == "active" and rng.random() < 0.5:
            victim = n.pids(n.status()).get("service:web")
        try:
            n.signal(pid, signal.SIGSTOP)
            if victim:
                try:  # its whole process group: an nginx worker outlives its master
                    os.killpg(victim, signal.SIGKILL)
                except OSError:
                    victim = None
            time.sleep(d)
        finally:
            try:
                n.signal(pid, signal.SIGCONT)
            except OSError:
                pass
        out = {"node": n.name, "state": state, "target": what, "pid": pid, "stopped_s": d}
        if victim:
            out["service_killed"] = victim
        # Not a partition: the peer stops hearing the active node, but the guard's fence (a
        # stopped supervisor) or the supervisor's linkd watchdog (a stopped linkd) must leave
        # no overlap (vacataire(8), CONTAINMENT and Liveness). Any overlap here is broken.
        return out
    return fault


def link_down(both):
    def fault(run, rng):
        links = ["link1", "link2"] if both else [rng.choice(["link1", "link2"])]
        side = rng.choice(["a", "b"])
        d = stall(rng, 0.2, 5.0)
        try:
            for l in links:
                run.topo.link_set(l, side, False)
            time.sleep(d)
        finally:
            for l in links:
                run.topo.link_set(l, side, True)
        out = {"links": links, "side": "node-" + side, "down_s": d}
        if both:
            out["partition_s"] = d
        return out
    return fault


def loss(run, rng):
    pct = rng.choice([10, 30, 50, 70, 90, 100])
    links = rng.choice([["link1"], ["link2"], ["link1", "link2"]])
    d = stall(rng, 0.5, 5.0)
    try:
        run.topo.loss(pct, links)
        time.sleep(d)
    finally:
        run.topo.loss_clear()
    out = {"loss_pct": pct, "links": links, "for_s": d}
    if pct >= 70 and len(links) == 2:
        # At 70% loss on each link, a heartbeat is lost on both half the time: a silence of
        # dead_after (five heartbeats at the defaults) becomes likely within seconds.
        out["partition_s"] = d
    return out


def delay(run, rng):
    base = rng.choice([5, 20, 50, 100, 200, 400])
    jitter = rng.choice([0, base // 2, base, 2 * base])
    cut1 = rng.random() < 0.5  # with link 1 down, the delayed link is the only one
    d = stall(rng, 0.5, 5.0)
    try:
        if cut1:
            run.topo.link_set("link1", "a", False)
        run.relay_control({"delay_ms": base, "jitter_ms": jitter})
        time.sleep(d)
    finally:
        run.relay_control({"delay_ms": 0, "jitter_ms": 0})
        if cut1:
            run.topo.link_set("link1", "a", True)
    out = {"delay_ms": base, "jitter_ms": jitter, "link1_down": cut1, "for_s": d}
    if cut1 and (base + jitter) / 1000.0 >= run.dead_after_s:
        out["partition_s"] = d  # heartbeats may come later than dead_after
    return out


def flood(run, rng):
    n = pick_node(run, rng, prefer_active=0.3)  # the passive node is the one a flood can move
    pps = rng.choice([2000, 5000, 10000, 20000])
    secs = round(rng.uniform(0.5, 3.0), 2)
    spoof = rng.random() < 0.5
    run.relay_control({"flood": {"to": n.key, "pps": pps, "seconds": secs, "spoof": spoof}})
    time.sleep(secs + 0.1)
    out = {"node": n.name, "pps": pps, "for_s": secs, "from_peer_address": spoof}
    # What the victim's linkd made of it (counters since its supervisor started).
    c = ((n.status() or {}).get("peer") or {}).get("counters")
    if c:
        out["victim_counters"] = c
    return out


def readonly(run, rng):
    """The state dir read-only, and during it a change the node must persist (or none)."""
    n = pick_node(run, rng)
    peer = run.nodes[n.peer_key]
    if run.state_of(n.key) == "active":
        then = rng.choice(["nothing", "release", "break-service", "break-and-restart"])
    else:
        then = rng.choice(["nothing", "takeover", "peer-release"])
    d = stall(rng, 1.0, 5.0)
    serving, _ = run.serving_now()
    col = 0 if n.key == "a" else 1
    t_ro = time.monotonic()
    run.topo.state_readonly(n.state_dir, True)
    out = {"node": n.name, "then": then, "for_s": d}
    try:
        if then in ("release", "takeover"):
            out["cli"] = n.cli(then)
        elif then == "peer-release":
            out["cli"] = peer.cli("release")
        elif then.startswith("break"):
            n.set_broken(True)
        if then == "break-and-restart":
            # The case: a node that failed over with a read-only state dir, then
            # restarted, must come back failed, not serve again without `recover`.
            out["failed"] = run.wait_node_state(n, {"failed"}, 10)
            with run.lock:
                n.kill9()
                n.start()
            wait_for(lambda: run.last_sample_t(n.key) > time.monotonic() - 0.05 and
                     run.state_of(n.key) is not None, 10)
            time.sleep(run.dead_after_s)
            out["after_restart"] = run.state_of(n.key)
            if out["failed"] and out["after_restart"] not in ("failed", None):
                run.breaks.append({"t": time.monotonic(), "fault": "readonly",
                                   "invariant": "failed-not-sticky",
                                   "detail": "%s failed with a read-only state dir, was restarted "
                                             "and came back %s" % (n.name, out["after_restart"]),
                                   "params": out})
        time.sleep(d)
        # A node that cannot persist a change must not act on it: if it was not serving when
        # its state dir went read-only, it must not start serving before it is writable again.
        started = run.started_serving(n.key, t_ro, time.monotonic())
        if serving is not None and not serving[col] and started:
            run.breaks.append({"t": started, "fault": "readonly",
                               "invariant": "acted-without-persisting",
                               "detail": "%s started serving while its state dir was read-only"
                                         % n.name, "params": out})
    finally:
        n.set_broken(False)
        run.topo.state_readonly(n.state_dir, False)
    return out


def operator(cmd):
    def fault(run, rng):
        act = run.active_node()
        if cmd == "release":
            n = act or pick_node(run, rng)
            out = {"node": n.name, "cli": n.cli("release")}
            if out["cli"][0] == 0:
                out["expect_active"] = "node-" + n.peer_key
            return out
        if cmd == "takeover":
            n = run.nodes[act.peer_key] if act else pick_node(run, rng)
            out = {"node": n.name, "cli": n.cli("takeover")}
            if out["cli"][0] == 0:
                out["expect_active"] = n.name
            return out
        if cmd == "svc-restart":
            n = pick_node(run, rng, prefer_active=0.7)
            return {"node": n.name, "state": run.state_of(n.key),
                    "cli": n.cli("svc", "restart", "web")}
        raise ValueError(cmd)
    return fault


def failback(run, rng):
    """The active node's page breaks (its content probe fails): it must fail over and become
    failed; then the page is mended and `recover --failback` brings the role back."""
    n = run.active_node() or run.nodes["a"]
    n.set_broken(True)
    st = run.wait_node_state(n, {"failed"}, 15)
    n.set_broken(False)
    out = {"node": n.name, "failed": st == "failed"}
    out["cli"] = n.cli("recover", "--failback")
    if out["cli"][0] == 0:
        out["expect_active"] = n.name
    # Let the status samples catch up, so settling does not send a second, plain recover.
    t = time.monotonic()
    wait_for(lambda: run.latest[n.key] and (
        run.latest[n.key]["node"].get("recovering") or run.state_of(n.key) != "failed")
        and run.last_sample_t(n.key) > t, 5)
    return out


def role_may_move(kind, p, dead_after_s):
    """Whether this fault may rightly move the active role. A move after any other fault is a
    spurious failover: the role moved although both nodes stayed able to hold it."""
    if kind in ("kill-linkd", "kill-probe", "kill-service", "flood", "link-down"):
        return False
    if kind in ("kill-supervisor", "svc-restart") and p.get("state") == "passive":
        return False
    if kind == "svc-restart":
        return False  # a restart of the active node's service is not a failure (start period)
    if kind.startswith("stop-"):
        return p.get("state") == "active" and p.get("stopped_s", 0) > dead_after_s / 2
    if kind == "loss":
        return len(p.get("links", [])) == 2 and p.get("loss_pct", 0) >= 50
    if kind == "delay":
        return bool(p.get("link1_down")) and \
            (p.get("delay_ms", 0) + p.get("jitter_ms", 0)) / 1000.0 >= dead_after_s / 2
    if kind == "readonly":
        return p.get("then") != "nothing"
    return True  # operator commands, failback, both links down, kill -9 of the active supervisor


KINDS = {
    "kill-supervisor": kill9("supervisor"),
    "kill-linkd": kill9("linkd"),
    "kill-probe": kill9("probe"),
    "kill-service": kill9("service"),
    "stop-supervisor": sigstop("supervisor"),
    "stop-linkd": sigstop("linkd"),
    "link-down": link_down(False),
    "links-down": link_down(True),
    "loss": loss,
    "delay": delay,
    "flood": flood,
    "readonly": readonly,
    "release": operator("release"),
    "takeover": operator("takeover"),
    "failback": failback,
    "svc-restart": operator("svc-restart"),
}
