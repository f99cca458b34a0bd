#!/usr/bin/env python3
"""Unit tests of the chaos harness's judgement (report.py and faults.role_may_move): given what
the poller saw and what was injected, the right rows and the right invariants broken. No
processes, no namespaces: run by ctest as chaos_report."""

import os
import sys
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from faults import role_may_move  # noqa: E402
from report import analyse, could_serve, table  # noqa: E402


def fake_run(poll, client=(), samples=(), breaks=(), witness="none", strict=False):
    args = types.SimpleNamespace(overlap_bound_ms=0.0, gap_bound_ms=3000.0, dead_after_s=1.0,
                                 resolve_margin_s=2.0, witness=witness, strict=strict,
                                 settle_s=30.0)
    lines = lambda xs: types.SimpleNamespace(lines=list(xs), read=lambda: None)  # noqa: E731
    return types.SimpleNamespace(args=args, poll=lines(poll), client=lines(client),
                                 samples=list(samples), breaks=list(breaks))


def fault(kind, t0, held_ms, **params):
    return {"kind": kind, "t0": t0, "held_ms": held_ms, "settle_ms": 0, "settled": True,
            "params": params}


class Analyse(unittest.TestCase):
    def test_an_overlap_is_broken_and_measured_in_its_fault_window(self):
        run = fake_run(["10.0 1 0", "# 10.5 100 6.0", "12.0 1 1", "12.25 0 1", "20.0 0 1"])
        r = analyse(run, [fault("kill-supervisor", 11.0, 100)], 10.0, 20.0, 7)
        row = r["rows"]["kill-supervisor"]
        self.assertEqual(row["count"], 1)
        self.assertAlmostEqual(row["both_max_ms"], 250, delta=1)
        self.assertEqual([b["invariant"] for b in r["breaks"]], ["two-serving"])
        self.assertEqual(r["breaks"][0]["seed"], 7)
        self.assertEqual(r["breaks"][0]["fault_index"], 0)
        self.assertEqual(r["poll_worst_gap_ms"], 6.0)

    def test_an_overlap_during_a_partition_is_counted_apart_unless_strict(self):
        poll = ["10.0 1 0", "12.0 1 1", "13.5 0 1", "20.0 0 1"]
        f = [fault("links-down", 11.0, 2000, down_s=2.0, partition_s=2.0)]
        r = analyse(fake_run(poll), f, 10.0, 20.0, 1)
        self.assertEqual(r["breaks"], [])
        self.assertEqual(r["rows"]["links-down"]["partition_overlaps"], 1)
        self.assertEqual(len(analyse(fake_run(poll, strict=True), f, 10.0, 20.0, 1)["breaks"]), 1)
        self.assertEqual(len(analyse(fake_run(poll, witness="peer-service"), f, 10.0, 20.0,
                                     1)["breaks"]), 1)

    def test_a_partition_overlap_that_outlasts_the_heal_is_broken(self):
        poll = ["10.0 1 0", "12.0 1 1", "16.5 0 1", "20.0 0 1"]  # healed at 13.0, ends 16.5
        f = [fault("links-down", 11.0, 2000, down_s=2.0, partition_s=2.0)]
        self.assertEqual(len(analyse(fake_run(poll), f, 10.0, 20.0, 1)["breaks"]), 1)

    def test_a_short_partition_excuses_nothing(self):
        poll = ["10.0 1 0", "11.2 1 1", "11.3 1 0", "20.0 1 0"]
        f = [fault("links-down", 11.0, 500, down_s=0.5, partition_s=0.5)]
        self.assertEqual(len(analyse(fake_run(poll), f, 10.0, 20.0, 1)["breaks"]), 1)

    def test_a_gap_is_broken_only_past_its_bound_and_while_one_could_serve(self):
        poll = ["10.0 1 0", "11.0 0 0", "12.0 0 1", "13.0 0 0", "17.0 1 0", "20.0 1 0"]
        f = [fault("kill-supervisor", 10.5, 100), fault("failback", 12.5, 100)]
        r = analyse(fake_run(poll), f, 10.0, 20.0, 1)
        self.assertAlmostEqual(r["rows"]["kill-supervisor"]["neither_max_ms"], 1000, delta=1)
        self.assertEqual([(b["invariant"], b["fault"]) for b in r["breaks"]],
                         [("none-serving", "failback")])
        both_failed = [(12.9, "a", "failed", 3, True), (12.9, "b", "maintenance", 4, True)]
        r = analyse(fake_run(poll, samples=both_failed), f, 10.0, 20.0, 1)
        self.assertEqual(r["breaks"], [])

    def test_could_serve_looks_at_the_latest_sample_of_each_node(self):
        s = [(1.0, "a", "failed", 1, False), (1.0, "b", "failed", 1, False),
             (2.0, "b", "passive", 1, True)]
        self.assertFalse(could_serve(s, 1.5))
        self.assertTrue(could_serve(s, 2.5))

    def test_client_failures_and_unsettled_faults_land_in_their_window(self):
        client = ["10.1 ok node-a", "11.2 fail ECONNREFUSED", "11.3 fail timeout",
                  "# 12.0 200 2", "14.1 fail 503"]
        f = [fault("kill-service", 11.0, 10), fault("delay", 14.0, 10)]
        f[1]["settled"] = False
        r = analyse(fake_run(["10.0 1 0"], client=client), f, 10.0, 20.0, 3)
        self.assertEqual(r["rows"]["kill-service"]["client_failed"], 2)
        self.assertEqual(r["rows"]["delay"]["client_failed"], 1)
        self.assertEqual([b["invariant"] for b in r["breaks"]], ["no-settle"])
        self.assertEqual(r["client_sent"], 200)
        self.assertIn("kill-service", table(r))

    def test_an_interrupted_fault_keeps_its_window_and_is_not_judged(self):
        poll = ["10.0 1 0", "15.0 1 1", "17.0 1 0", "20.0 1 0"]
        f = [fault("links-down", 11.0, 2000, partition_s=2.0),
             dict(fault("links-down", 14.5, 0), interrupted=True)]
        r = analyse(fake_run(poll), f, 10.0, 20.0, 1)
        self.assertEqual(r["breaks"], [])
        self.assertEqual(r["rows"]["links-down"]["count"], 1)


class RoleMayMove(unittest.TestCase):
    def test_faults_that_leave_both_nodes_able_must_not_move_the_role(self):
        self.assertFalse(role_may_move("kill-linkd", {}, 1.0))
        self.assertFalse(role_may_move("flood", {}, 1.0))
        self.assertFalse(role_may_move("stop-linkd", {"state": "passive", "stopped_s": 4}, 1.0))
        self.assertFalse(role_may_move("stop-linkd", {"state": "active", "stopped_s": 0.3}, 1.0))
        self.assertFalse(role_may_move("loss", {"links": ["link1"], "loss_pct": 100}, 1.0))
        self.assertFalse(role_may_move("kill-supervisor", {"state": "passive"}, 1.0))

    def test_faults_that_may_move_it(self):
        self.assertTrue(role_may_move("stop-linkd", {"state": "active", "stopped_s": 2}, 1.0))
        self.assertTrue(role_may_move("kill-supervisor", {"state": "active"}, 1.0))
        self.assertTrue(role_may_move("loss", {"links": ["link1", "link2"], "loss_pct": 70}, 1.0))
        self.assertTrue(role_may_move("links-down", {}, 1.0))
        self.assertTrue(role_may_move("release", {}, 1.0))


if __name__ == "__main__":
    unittest.main()
