"""From what the watchers saw and what the harness did, the per-fault-kind table and the
invariants broken."""

import bisect

UNABLE = {"failed", "maintenance"}


def parse_poll(lines):
    """[(t, a, b)] transitions, and the poller's worst gap between rounds (its resolution)."""
    out, worst = [], 0.0
    for line in lines:
        f = line.split()
        if f[0] == "#":
            worst = max(worst, float(f[3]))
        else:
            out.append((float(f[0]), int(f[1]), int(f[2])))
    return out, worst


def parse_client(lines):
    fails, sent, failed = [], 0, 0
    for line in lines:
        f = line.split()
        if f[0] == "#":
            sent, failed = int(f[2]), int(f[3])
        elif f[1] == "fail":
            fails.append(float(f[0]))
    return fails, sent, failed


class Windows:
    """Fault windows: each runs from its injection to the next one's (settling included)."""

    def __init__(self, faults, t_start):
        self.starts = [t_start] + [f["t0"] for f in faults]
        self.labels = ["start-up"] + [f["kind"] for f in faults]
        self.index = [None] + list(range(len(faults)))

    def at(self, t):
        i = max(0, bisect.bisect_right(self.starts, t) - 1)
        return i


def could_serve(samples, t):
    """False only when both nodes' latest status before t says failed or maintenance."""
    last = {}
    for s in samples:
        if s[0] > t:
            break
        last[s[1]] = s[2]
    return not (last.get("a") in UNABLE and last.get("b") in UNABLE)


def partition_excuse(args, fault, t, dur):
    """True for an overlap no two-node pair without a witness can avoid: during a fault that
    silenced the peer link longer than dead_after, ending within the resolution margin after
    the link came back. With a witness, or --strict, nothing is excused."""
    if args.strict or args.witness != "none" or not fault:
        return False
    p = fault.get("params") or {}
    if p.get("partition_s", 0) < args.dead_after_s:
        return False
    healed = fault["t0"] + fault["held_ms"] / 1000.0
    return t >= fault["t0"] and t + dur / 1000.0 <= healed + args.resolve_margin_s


def analyse(run, faults, t_start, t_end, seed):
    args = run.args
    run.poll.read()
    run.client.read()
    trans, poll_worst = parse_poll(run.poll.lines)
    fails, sent, failed = parse_client(run.client.lines)
    samples = sorted(run.samples)
    win = Windows(faults, t_start)
    rows = {}

    def row(label):
        return rows.setdefault(label, {"count": 0, "both_max_ms": 0.0, "both_total_ms": 0.0,
                                       "neither_max_ms": 0.0, "client_failed": 0,
                                       "settle_max_ms": 0.0, "broken": 0,
                                       "partition_overlaps": 0})

    for f in faults:
        r = row(f["kind"])
        r["count"] += 0 if f.get("interrupted") else 1
        r["settle_max_ms"] = max(r["settle_max_ms"], f.get("settle_ms", 0.0))
    breaks = list(run.breaks)
    for i, (t, a, b) in enumerate(trans):
        if t < t_start:
            continue
        t_next = trans[i + 1][0] if i + 1 < len(trans) else t_end
        dur = (t_next - t) * 1000
        w = win.at(t)
        label = win.labels[w]
        fault = faults[win.index[w]] if win.index[w] is not None else None
        r = row(label)
        if fault and fault.get("interrupted"):
            continue  # the run was stopped in the middle of this fault: nothing to judge
        if a and b:
            r["both_max_ms"] = max(r["both_max_ms"], dur)
            r["both_total_ms"] += dur
            if dur > args.overlap_bound_ms and partition_excuse(args, fault, t, dur):
                r["partition_overlaps"] += 1
            elif dur > args.overlap_bound_ms:
                breaks.append({"t": t, "fault": label, "invariant": "two-serving",
                               "detail": "both nodes answered for %.0f ms" % dur,
                               "params": fault and fault["params"]})
        elif not a and not b and could_serve(samples, t):
            r["neither_max_ms"] = max(r["neither_max_ms"], dur)
            if dur > args.gap_bound_ms:
                breaks.append({"t": t, "fault": label, "invariant": "none-serving",
                               "detail": "neither node answered for %.0f ms while one could"
                                         % dur, "params": fault and fault["params"]})
    for t in fails:
        if t >= t_start:
            row(win.labels[win.at(t)])["client_failed"] += 1
    for f in faults:
        if not f.get("settled", True):
            breaks.append({"t": f["t0"], "fault": f["kind"], "invariant": "no-settle",
                           "detail": "not settled %.0f s after healing: %s"
                                     % (args.settle_s, f.get("why", "")),
                           "params": f["params"]})
    for b in breaks:
        b["seed"] = seed
        b["at_s"] = round(b["t"] - t_start, 3)
        w = win.at(b["t"])
        b.setdefault("fault_index", win.index[w])
        row(b["fault"])["broken"] += 1
    breaks.sort(key=lambda b: b["t"])
    return {"rows": rows, "breaks": breaks, "client_sent": sent, "client_failed": failed,
            "poll_worst_gap_ms": poll_worst, "seconds": t_end - t_start}


def table(result):
    cols = ["count", "both_max_ms", "both_total_ms", "neither_max_ms", "client_failed",
            "settle_max_ms", "partition", "broken"]
    head = "%-16s %6s %11s %13s %14s %13s %13s %9s %6s" % ("kind", *cols)
    lines = [head, "-" * len(head)]
    for label in sorted(result["rows"]):
        r = result["rows"][label]
        lines.append("%-16s %6d %11.0f %13.0f %14.0f %13d %13.0f %9d %6d" % (
            label, r["count"], r["both_max_ms"], r["both_total_ms"], r["neither_max_ms"],
            r["client_failed"], r["settle_max_ms"], r["partition_overlaps"], r["broken"]))
    return "\n".join(lines)
