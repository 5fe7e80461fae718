#!/usr/bin/python3
"""Fold rate of the MongoDB stand-in (tests/harness/mongo_standin.py), without walfold.

Sends the statements walfold's fold sends for one inserted transaction row (see
projections/bank_fold.cpp): per change an upsert-if-missing plus a guarded $set on
`transactions`, on `users` (guarded $inc/$set of acct_lsn.<id>) and on `accounts` (guarded $inc
of the balance, $push/$each/$sort/$slice of last_transactions, $set applied_lsn), as three
ordered bulk writes per batch like projections/sink.cpp. Prints changes/s.

  /usr/bin/python3 bench/standin_bench.py [--changes 20000] [--batch 500] [--accounts 20000]
      [--port P]   (without --port it starts its own stand-in on a free port)
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import bson
from bson.decimal128 import Decimal128
from bson.int64 import Int64
import pymongo
from pymongo import UpdateOne

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def guarded(_id, guard, lsn):
    return {'_id': Int64(_id), guard: {'$not': {'$gte': Int64(lsn)}}}


def ensure(_id, defaults):
    return UpdateOne({'_id': Int64(_id)}, {'$setOnInsert': defaults}, upsert=True)


def plan(i, accounts, lsn):
    acct = 1 + (i * 7919) % accounts
    user = 1 + acct // 2
    amount = Decimal128('%d.%04d' % (i % 5000, i % 10000))
    created = 1700000000000000 + i
    tx = [ensure(i + 1, {'deleted': False}),
          UpdateOne(guarded(i + 1, 'applied_lsn', lsn),
                    {'$set': {'account_id': Int64(acct), 'kind': 'deposit', 'amount': amount,
                              'created_at_us': Int64(created), 'transfer_id': None,
                              'deleted': False, 'applied_lsn': Int64(lsn)}})]
    path = 'acct_lsn.%d' % acct
    flt = guarded(user, path, lsn)
    flt['floor_lsn'] = {'$not': {'$gte': Int64(lsn)}}
    users = [ensure(user, {'accounts': [], 'balances': {}, 'acct_lsn': {}, 'deleted': False}),
             UpdateOne(flt, {'$inc': {'balances.USD': amount}, '$set': {path: Int64(lsn)}})]
    accts = [ensure(acct, {'balance': Decimal128('0'), 'last_transactions': []}),
             UpdateOne(guarded(acct, 'applied_lsn', lsn),
                       {'$inc': {'balance': amount},
                        '$push': {'last_transactions': {
                            '$each': [{'id': Int64(i + 1), 'kind': 'deposit', 'amount': amount,
                                       'created_at_us': Int64(created)}],
                            '$sort': {'created_at_us': -1, 'id': -1}, '$slice': 3}},
                        '$set': {'applied_lsn': Int64(lsn)}})]
    return tx, users, accts


def cpu_s(pid):
    if not pid:
        return 0.0
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--changes', type=int, default=20000)
    ap.add_argument('--batch', type=int, default=500)
    ap.add_argument('--accounts', type=int, default=20000)
    ap.add_argument('--port', type=int)
    a = ap.parse_args()
    proc = None
    port = a.port
    if port is None:
        ready = tempfile.mktemp(prefix='standin-ready-')
        proc = subprocess.Popen(['/usr/bin/python3', os.path.join(ROOT, 'tests/harness/mongo_standin.py'),
                                 '--port', '0', '--ready-file', ready], stdout=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        port = int(open(ready).read())
        os.unlink(ready)
    try:
        db = pymongo.MongoClient('127.0.0.1', port, directConnection=True)['standin_bench']
        db.command('dropDatabase')
        pid = proc.pid if proc else None
        c0 = cpu_s(pid)
        t0 = time.monotonic()
        done = 0
        while done < a.changes:
            n = min(a.batch, a.changes - done)
            tx, us, ac = [], [], []
            for i in range(done, done + n):
                p = plan(i, a.accounts, 0x1000000 + i)
                tx += p[0]
                us += p[1]
                ac += p[2]
            db.transactions.bulk_write(tx, ordered=True)
            db.users.bulk_write(us, ordered=True)
            db.accounts.bulk_write(ac, ordered=True)
            done += n
        dt = time.monotonic() - t0
        print('stand-in fold: %d changes (%d update statements) in %.2f s: %.0f changes/s, '
              '%.0f statements/s' % (done, done * 6, dt, done / dt, done * 6 / dt))
        if pid:
            c = cpu_s(pid) - c0
            print('stand-in CPU: %.2f s = %.0f changes per CPU second (the rest of the wall time '
                  'is this client: pymongo encodes in Python)' % (c, done / c))
        # A find, not count_documents: the stand-in has no aggregate (tests/harness/MONGO_STANDIN.md).
        if len(list(db.accounts.find({}, projection={'_id': 1}))) != min(a.accounts, a.changes):
            sys.exit('stand-in bench: unexpected account count')
    finally:
        if proc:
            proc.terminate()
            proc.wait()


if __name__ == '__main__':
    main()
