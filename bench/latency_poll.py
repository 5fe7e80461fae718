#!/usr/bin/python3
"""Polls the read model's `transactions` collection and prints, per newly visible row, how long
after its commit it became visible in MongoDB (bench/latency.sh).

Every row loadgen writes is a marker: its created_at is now() of its own one-statement
transaction, i.e. its commit time within the statement's duration (sub-millisecond here).
The poller asks MongoDB for rows with a larger _id than the newest it saw, every --every ms,
and records (now - created_at_us) for each new one: the figure is when the poll that found
the row returned, so it is late by up to --every plus one poll (half of that on average).
An _id range is an index range in MongoDB and in the stand-in (its sorted _id index; before
it had one, each poll scanned the whole collection and the poller was most of the stand-in's
load). Prints p50, p99, max and the count after --seconds, and how many polls it made and
how long one took; --dump writes every row's times for a breakdown (bench/README.md).
"""
import argparse
import time

import pymongo


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--every", type=float, default=2.0, help="poll interval, ms")
    ap.add_argument("--skip", type=float, default=5, help="seconds of warm-up not counted")
    ap.add_argument("--gap-seconds", type=float, default=20,
                    help="how long an _id skipped over is looked for")
    ap.add_argument("--gap-batch", type=int, default=2000, help="skipped ids asked per poll")
    ap.add_argument("--dump", help="write '<_id> <seen unix s> <created unix s>' per row here")
    a = ap.parse_args()
    coll = pymongo.MongoClient(a.uri)[a.db]["transactions"]
    last = coll.find_one(sort=[("_id", -1)], projection={"_id": 1})
    last_id = last["_id"] if last else 0
    start = time.time()
    lat = []
    rows = []
    polls = 0
    poll_s = 0.0
    gave_up = 0
    # Rows do not become visible in _id order (two workers, several loadgen connections, a
    # backlog folded by account): the ids skipped below the newest seen are asked for by
    # {_id: {$in: [...]}} until they appear, or for --gap-seconds (deleted rows, sequence gaps).
    missing = {}  # _id -> when first missed
    while time.time() - start < a.seconds:
        t0 = time.time()
        proj = {"_id": 1, "created_at_us": 1}
        docs = list(coll.find({"_id": {"$gt": last_id}}, projection=proj))
        if missing:
            ask = sorted(missing)[:a.gap_batch]
            docs += coll.find({"_id": {"$in": ask}}, projection=proj)
        seen = time.time()
        polls += 1
        poll_s += seen - t0
        top = last_id
        for d in sorted(docs, key=lambda d: d["_id"]):
            i = d["_id"]
            if i > top:
                for gap in range(top + 1, i):
                    missing[gap] = seen
                top = i
            elif missing.pop(i, None) is None:
                continue  # already counted
            if seen - start >= a.skip and "created_at_us" in d:
                lat.append(seen * 1000 - d["created_at_us"] / 1000)
                rows.append((i, seen, d["created_at_us"] / 1e6))
        last_id = top
        for i in [i for i, t in missing.items() if seen - t > a.gap_seconds]:
            del missing[i]
            gave_up += 1
        rest = a.every / 1000 - (time.time() - t0)
        if rest > 0:
            time.sleep(rest)
    if not lat:
        print("no rows seen")
        return 1
    # Kept up? At a rate the system sustains the latency stays flat; past it, a backlog grows
    # and so does every later row's latency. Compare the medians of the first and last quarter.
    q = max(1, len(lat) // 4)
    first, last = sorted(lat[:q]), sorted(lat[-q:])
    trend = (first[len(first) // 2], last[len(last) // 2])
    span = rows[-1][1] - rows[0][1] if len(rows) > 1 else 0
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
    print("rows %d  p50 %.1f ms  p99 %.1f ms  max %.1f ms  (%d polls, %.2f ms each on average)"
          % (len(lat), pct(50), pct(99), lat[-1], polls, poll_s / polls * 1000))
    kept_up = trend[1] <= 2 * trend[0] + 20
    print("ids skipped over and never seen (deleted, gaps; or later than --gap-seconds): %d, "
          "still looked for at the end: %d" % (gave_up, len(missing)))
    print("rows seen %.0f/s; median latency first quarter %.1f ms, last quarter %.1f ms: %s"
          % (len(rows) / span if span else 0, trend[0], trend[1],
             "kept up" if kept_up else "NOT kept up (a backlog grew)"))
    if a.dump:
        with open(a.dump, "w") as f:
            for r in rows:
                f.write("%d %.6f %.6f\n" % r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
