#!/usr/bin/env python3
"""Strict check of a Prometheus text exposition (walfold's /metrics): Debian's
python3-prometheus-client parser must read every line, every sample must belong to a family with
HELP and TYPE, histogram buckets must be cumulative and end in +Inf == _count, and
`promtool check metrics` (Debian's prometheus package) must accept it. Exit 0 only when all hold.

usage: check_exposition.py FILE
"""
import math
import shutil
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    text = open(sys.argv[1], encoding="utf-8").read()
    problems = []
    helps, types = set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ")[2])
        elif line.startswith("# TYPE "):
            parts = line.split(" ")
            types[parts[2]] = parts[3]
        elif line.startswith("#") or not line.strip():
            continue
    families = list(text_string_to_metric_families(text))  # raises on any malformed line
    if not families:
        problems.append("no metric families")
    for fam in families:
        name = fam.name
        if name not in helps or name not in types:
            # the client strips _total from counters: look for the exposed name too
            if name + "_total" not in helps:
                problems.append(f"{name}: no HELP/TYPE")
        if fam.type == "counter" and not name.startswith("walfold_"):
            problems.append(f"{name}: not in the walfold_ namespace")
        for s in fam.samples:
            if math.isnan(s.value):
                problems.append(f"{s.name}: NaN")
            if fam.type == "counter" and s.value < 0:
                problems.append(f"{s.name}: negative counter")
        if fam.type == "histogram":
            buckets = [s for s in fam.samples if s.name.endswith("_bucket")]
            count = [s.value for s in fam.samples if s.name.endswith("_count")]
            values = [b.value for b in buckets]
            if values != sorted(values):
                problems.append(f"{name}: buckets not cumulative")
            if not buckets or buckets[-1].labels.get("le") != "+Inf":
                problems.append(f"{name}: no +Inf bucket last")
            elif count and buckets[-1].value != count[0]:
                problems.append(f"{name}: +Inf bucket {buckets[-1].value} != _count {count[0]}")
    promtool = shutil.which("promtool")
    if not promtool:
        problems.append("promtool not installed (apt-get install prometheus)")
    else:
        r = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                           capture_output=True, check=False)
        if r.returncode != 0:
            problems.append("promtool check metrics: " + (r.stdout + r.stderr).strip())
    for p in problems:
        print("PROBLEM:", p)
    print(f"{len(families)} families checked")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
