#!/usr/bin/env python3
"""A jsonl probe in Python: free space on a filesystem.

    disk_free.py PATH WARN_PERCENT FAIL_PERCENT

Started once by the supervisor; for each {"check": N} line on stdin it answers one line
{"check": N, "status": "ok"|"warn"|"fail", "detail": ..., "metrics": {...}} on stdout.
"""
import json
import os
import sys


def check(path, warn, fail):
    st = os.statvfs(path)
    free = 100.0 * st.f_bavail / st.f_blocks if st.f_blocks else 0.0
    status = "fail" if free < fail else "warn" if free < warn else "ok"
    detail = "%.1f%% free on %s" % (free, path)
    metrics = {"free": {"value": free, "uom": "%", "warn": warn, "crit": fail}}
    return status, detail, metrics


def main():
    path, warn, fail = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    for line in sys.stdin:
        n = json.loads(line)["check"]
        try:
            status, detail, metrics = check(path, warn, fail)
        except OSError as e:
            status, detail, metrics = "fail", "cannot stat %s: %s" % (path, e.strerror), {}
        print(json.dumps({"check": n, "status": status, "detail": detail, "metrics": metrics}),
              flush=True)


if __name__ == "__main__":
    main()
