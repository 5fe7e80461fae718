#!/usr/bin/python3
"""Polls the read model's `transactions` collection and prints, per newly visible row, how long
after its commit it became visible in MongoDB (bench/latency.sh).

Every row loadgen writes is a marker: its created_at is now() of its own one-statement
transaction, i.e. its commit time within the statement's duration (sub-millisecond here).
The poller asks MongoDB for rows with a larger _id than the newest it saw, every --every ms,
and records (now - created_at_us) for each new one; with --every 2 the measurement adds on
average ~1 ms. Prints p50, p99, max and the count after --seconds.
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
    a = ap.parse_args()
    coll = pymongo.MongoClient(a.uri)[a.db]["transactions"]
    last = coll.find_one(sort=[("_id", -1)], projection={"_id": 1})
    last_id = last["_id"] if last else 0
    start = time.time()
    lat = []
    while time.time() - start < a.seconds:
        t0 = time.time()
        docs = list(coll.find({"_id": {"$gt": last_id}}, projection={"_id": 1, "created_at_us": 1}))
        seen = time.time()
        for d in docs:
            last_id = max(last_id, d["_id"])
            if seen - start >= a.skip and "created_at_us" in d:
                lat.append(seen * 1000 - d["created_at_us"] / 1000)
        rest = a.every / 1000 - (time.time() - t0)
        if rest > 0:
            time.sleep(rest)
    lat.sort()
    if not lat:
        print("no rows seen")
        return 1
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
    print("rows %d  p50 %.1f ms  p99 %.1f ms  max %.1f ms" % (len(lat), pct(50), pct(99), lat[-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
