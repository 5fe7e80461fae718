#!/usr/bin/python3
"""Self-test for mongo_standin.py: what only the stand-in has (its process, its wire handling,
what it refuses).  MongoDB's behaviour itself is checked by the contract suite,
tests/contract/mongo_contract.py, against the stand-in and a real MongoDB alike.

Run:  /usr/bin/python3 tests/harness/test_mongo_standin.py [-v] [unittest args]

Starts the stand-in on a free loopback port and checks: the handshake it advertises; raw
wire-protocol messages (OP_MSG kind-0/kind-1 sections in any order, moreToCome, the legacy
OP_QUERY handshake); that everything outside walfold's surface is refused with MongoDB's code
(115 CommandNotSupported for what MongoDB has and the stand-in does not, 59 / 9 / 2 for names
MongoDB does not know either), never emulated; concurrent clients; libmongoc (walfold's client)
through standin_c_probe.c; start-up and shutdown.  Exits non-zero if anything fails.
"""

import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

try:
    import bson
    from bson.codec_options import CodecOptions
    from bson.decimal128 import Decimal128
    from bson.int64 import Int64
    from bson.son import SON
    from pymongo.errors import DuplicateKeyError, OperationFailure, WriteError
except ImportError as exc:  # pragma: no cover
    sys.stderr.write('test_mongo_standin: %s; run with /usr/bin/python3 and install '
                     'python3-pymongo\n' % exc)
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'contract'))
from target import PYTHON, STANDIN, StandinProcess  # noqa: E402  pylint: disable=wrong-import-position

C_PROBE = os.path.join(HERE, 'standin_c_probe.c')
SERVER = None


def setUpModule():
    global SERVER  # pylint: disable=global-statement
    SERVER = StandinProcess()


def tearDownModule():
    rc, took = SERVER.stop()
    text = SERVER.stderr_text()
    SERVER.cleanup()
    if rc != 0:
        raise AssertionError('stand-in exited with %r after SIGTERM (%.1fs); stderr:\n%s'
                             % (rc, took, text[-4000:]))


# ---------------------------------------------------------------------------------------------
# Raw wire protocol helpers
# ---------------------------------------------------------------------------------------------
OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013


def kind0(doc):
    return b'\x00' + bson.encode(doc)


def kind1(identifier, docs):
    payload = identifier.encode() + b'\x00' + b''.join(bson.encode(d) for d in docs)
    return b'\x01' + struct.pack('<i', 4 + len(payload)) + payload


def op_msg(request_id, sections, flags=0):
    body = struct.pack('<I', flags) + b''.join(sections)
    return struct.pack('<iiii', 16 + len(body), request_id, 0, OP_MSG) + body


def op_query_cmd(request_id, ns, doc):
    body = struct.pack('<i', 0) + ns.encode() + b'\x00' + struct.pack('<ii', 0, -1) + \
        bson.encode(doc)
    return struct.pack('<iiii', 16 + len(body), request_id, 0, OP_QUERY) + body


def recv_exact(sock, n):
    buf = b''
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError('connection closed')
        buf += chunk
    return buf


def read_reply(sock):
    """Returns (responseTo, opcode, first document)."""
    length, _, response_to, opcode = struct.unpack('<iiii', recv_exact(sock, 16))
    body = recv_exact(sock, length - 16)
    opts = CodecOptions(document_class=dict)
    if opcode == OP_MSG:
        assert body[4:5] == b'\x00', 'expected a kind-0 section'
        return response_to, opcode, bson.decode(body[5:], opts)
    if opcode == OP_REPLY:
        n_returned = struct.unpack('<i', body[16:20])[0]
        docs = bson.decode_all(body[20:], opts)
        assert len(docs) == n_returned
        return response_to, opcode, docs[0] if docs else None
    raise AssertionError('unexpected opcode %d' % opcode)


class Base(unittest.TestCase):
    client = None

    @classmethod
    def setUpClass(cls):
        cls.client = SERVER.client()
        cls.db = cls.client['selftest_%s' % cls.__name__.lower()]

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def fresh(self):
        """A collection of this test's own (the stand-in has no `drop`)."""
        return self.db['c_' + self._testMethodName]

    def code_of(self, fn, exc_type=OperationFailure):
        with self.assertRaises(exc_type) as cm:
            fn()
        return cm.exception.code


class TestHandshake(Base):
    def test_hello_fields(self):
        for name in ('isMaster', 'ismaster', 'hello'):
            r = self.client.admin.command(name)
            self.assertIs(r['ismaster'], True)
            self.assertIs(r['isWritablePrimary'], True)
            self.assertEqual(r['maxWireVersion'], 13)
            self.assertEqual(r['maxBsonObjectSize'], 16 * 1024 * 1024)
            self.assertEqual(r['maxMessageSizeBytes'], 48000000)
            self.assertEqual(r['maxWriteBatchSize'], 100000)
            self.assertEqual(r['logicalSessionTimeoutMinutes'], 30)
            self.assertNotIn('setName', r)  # standalone: no retryable writes, no transactions
        self.assertEqual(self.client.admin.command('buildInfo')['version'], '6.0.0')

    def test_distinct_connection_ids_and_sessions(self):
        a, b = SERVER.client(), SERVER.client()
        try:
            self.assertNotEqual(a.admin.command('hello')['connectionId'],
                                b.admin.command('hello')['connectionId'])
            coll = self.fresh()
            with a.start_session() as session:
                a[self.db.name][coll.name].insert_one({'_id': 1}, session=session)
            self.assertEqual(a.admin.command('endSessions', [{'id': bson.Binary(
                b'0123456789abcdef', 4)}])['ok'], 1.0)
        finally:
            a.close()
            b.close()


class TestRefusals(Base):
    """Outside walfold's surface: MongoDB's error, never a guess."""

    def test_commands(self):
        for cmd in ('aggregate', 'count', 'distinct', 'findAndModify', 'drop', 'create',
                    'listCollections', 'listIndexes', 'dropIndexes', 'renameCollection',
                    'serverStatus', 'explain'):
            with self.assertRaises(OperationFailure, msg=cmd) as cm:
                self.db.command(SON([(cmd, 'c'), ('pipeline', []), ('to', 'x.y')]))
            self.assertEqual(cm.exception.code, 115, cmd)
            self.assertEqual(cm.exception.details['codeName'], 'CommandNotSupported', cmd)
            self.assertIn(cmd, str(cm.exception))
        self.assertEqual(self.code_of(lambda: self.db.command('walfoldBogusCommand')), 59)
        self.assertEqual(self.code_of(lambda: self.fresh().count_documents({})), 115)
        time.sleep(0.2)
        text = SERVER.stderr_text()
        self.assertIn("unsupported command 'findAndModify'", text)
        self.assertIn("unknown command 'walfoldBogusCommand'", text)

    def test_update_operators_and_options(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'a': [1, 2], 'n': 1})
        for update in ({'$mul': {'n': 2}}, {'$min': {'n': 0}}, {'$rename': {'n': 'm'}},
                       {'$currentDate': {'d': True}}, {'$pop': {'a': 1}},
                       {'$pullAll': {'a': [1]}}, {'$bit': {'n': {'and': 1}}},
                       {'$set': {'a.$': 5}}, {'$set': {'a.$[]': 5}},
                       {'$push': {'a': {'$each': [3], '$position': 0}}},
                       {'$addToSet': {'a': {'$each': [3]}}}, {'$pull': {'a': {'$gt': 1}}}):
            self.assertEqual(self.code_of(lambda: coll.update_one({'_id': 1}, update),
                                          WriteError), 115, update)
        self.assertEqual(self.code_of(lambda: coll.update_one(
            {'_id': 1}, {'$set': {'a.$[x]': 5}}, array_filters=[{'x': 1}]), WriteError), 115)
        self.assertEqual(self.code_of(lambda: coll.update_one({'_id': 1}, [{'$set': {'n': 2}}]),
                                      WriteError), 115)
        self.assertEqual(self.code_of(lambda: coll.update_one({'_id': 1}, {'$frob': {'n': 2}}),
                                      WriteError), 9)
        self.assertEqual(coll.find_one({'_id': 1}), {'_id': 1, 'a': [1, 2], 'n': 1})

    def test_queries_projections_indexes(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'a': [1, 2], 's': 'text', 'e': {'x': 1}})
        for flt in ({'a': 1}, {'a.0': 1}, {'s': {'$regex': 't'}}, {'a': {'$size': 2}},
                    {'a': {'$elemMatch': {'$gt': 1}}}, {'$expr': {'$eq': ['$s', 'x']}},
                    {'s': {'$type': 'string'}}, {'$where': 'true'}, {'s': [1]}):
            self.assertEqual(self.code_of(lambda: list(coll.find(flt))), 115, flt)
        self.assertEqual(self.code_of(lambda: list(coll.find({'s': {'$frob': 1}}))), 2)
        for proj in ({'e.x': 1}, {'a': {'$slice': 1}}, {'a.$': 1}):
            self.assertEqual(self.code_of(lambda: list(coll.find({}, projection=proj))), 115)
        self.assertEqual(self.code_of(lambda: list(coll.find({}, sort=[('a', 1)]))), 115)
        self.assertEqual(self.code_of(lambda: self.db.command(SON([
            ('createIndexes', coll.name), ('indexes', [
                {'key': {'s': 1}, 'name': 's', 'unique': True}])]))), 115)


class TestIdRangeIndex(Base):
    """{_id: {$gt/$gte/$lt/$lte: <integer>}} is answered from a sorted index of integer _ids
    (built on the first such query, then kept up to date by every write): it must agree with
    the full scan ({$and: [...]} does not use it) after any mix of writes. MongoDB's side of
    the same queries is in tests/contract (test_id_ranges_bracket_by_type_and_follow_writes)."""

    def test_index_agrees_with_a_scan_after_random_writes(self):
        coll = self.fresh()
        rng = random.Random(12)
        coll.insert_many([{'_id': Int64(i), 'v': i} for i in range(0, 200, 2)] +
                         [{'_id': 'k%d' % i} for i in range(5)] + [{'_id': 50.5}])

        def check():
            for _ in range(5):
                lo, hi = sorted(rng.randrange(-5, 260) for _ in range(2))
                for cond in ({'$gt': lo}, {'$gte': Int64(lo)}, {'$lt': hi},
                             {'$gt': lo, '$lte': hi}, {'$gte': lo, '$lt': hi, '$gt': lo + 3}):
                    fast = [d['_id'] for d in coll.find({'_id': cond})]
                    scan = [d['_id'] for d in coll.find({'$and': [{'_id': cond}]})]
                    self.assertEqual(fast, scan, cond)  # same documents, same (natural) order

        check()
        for _ in range(300):
            i = rng.randrange(0, 260)
            op = rng.randrange(4)
            if op == 0:
                coll.delete_one({'_id': i})
            elif op == 1:
                coll.update_one({'_id': Int64(i)}, {'$set': {'v': -i}}, upsert=True)
            elif op == 2:
                coll.delete_many({'_id': {'$gt': i, '$lt': i + 3}})
            else:
                try:
                    coll.insert_one({'_id': i})
                except DuplicateKeyError:
                    pass
        check()
        coll.delete_many({})
        self.assertEqual(list(coll.find({'_id': {'$gt': 0}})), [])
        coll.insert_one({'_id': 7})
        self.assertEqual([d['_id'] for d in coll.find({'_id': {'$gte': 7}})], [7])


class TestWireProtocol(Base):
    def sock(self):
        s = socket.create_connection(('127.0.0.1', SERVER.port), timeout=10)
        self.addCleanup(s.close)
        return s

    def test_legacy_op_query_handshake(self):
        s = self.sock()
        s.sendall(op_query_cmd(7, 'admin.$cmd', {'isMaster': 1, 'client': {
            'driver': {'name': 'raw', 'version': '0'}}}))
        resp_to, opcode, doc = read_reply(s)
        self.assertEqual((resp_to, opcode), (7, OP_REPLY))
        self.assertIs(doc['ismaster'], True)
        self.assertEqual(doc['maxWireVersion'], 13)
        # Then OP_MSG on the same connection.
        s.sendall(op_msg(8, [kind0({'ping': 1, '$db': 'admin'})]))
        self.assertEqual(read_reply(s)[:2], (8, OP_MSG))

    def test_kind1_sections_for_insert_update_delete(self):
        coll = self.fresh()
        db = self.db.name
        s = self.sock()
        docs = [{'_id': i, 'v': Int64(i * 10)} for i in range(5)]
        s.sendall(op_msg(1, [kind0({'insert': coll.name, 'ordered': True, '$db': db}),
                             kind1('documents', docs)]))
        resp_to, _, reply = read_reply(s)
        self.assertEqual(resp_to, 1)
        self.assertEqual((reply['ok'], reply['n']), (1.0, 5))
        updates = [{'q': {'_id': i}, 'u': {'$inc': {'v': Int64(1)}}} for i in range(3)]
        updates.append({'q': {'_id': 99}, 'u': {'$set': {'v': Int64(0)}}, 'upsert': True})
        s.sendall(op_msg(2, [kind0({'update': coll.name, '$db': db}),
                             kind1('updates', updates)]))
        _, _, reply = read_reply(s)
        self.assertEqual((reply['n'], reply['nModified']), (4, 3))
        self.assertEqual(reply['upserted'], [{'index': 3, '_id': 99}])
        s.sendall(op_msg(3, [kind1('deletes', [{'q': {'_id': 4}, 'limit': 1},
                                               {'q': {'v': {'$gte': Int64(20)}}, 'limit': 0}]),
                             kind0({'delete': coll.name, '$db': db})]))  # kind-1 first
        _, _, reply = read_reply(s)
        self.assertEqual(reply['n'], 3)
        self.assertEqual(sorted(d['_id'] for d in coll.find()), [0, 1, 99])
        self.assertIs(type(coll.find_one({'_id': 0})['v']), Int64)

    def test_more_to_come_gets_no_reply(self):
        coll = self.fresh()
        s = self.sock()
        s.sendall(op_msg(10, [kind0({'insert': coll.name, '$db': self.db.name,
                                     'writeConcern': {'w': 0}}),
                              kind1('documents', [{'_id': 'fire-and-forget'}])], flags=2))
        s.sendall(op_msg(11, [kind0({'ping': 1, '$db': 'admin'})]))
        resp_to, _, reply = read_reply(s)
        self.assertEqual(resp_to, 11, 'the moreToCome message must not be answered')
        self.assertEqual(list(coll.find({'_id': 'fire-and-forget'})), [{'_id': 'fire-and-forget'}])

    def test_unknown_command_over_raw_op_msg(self):
        s = self.sock()
        s.sendall(op_msg(5, [kind0({'fooBarBaz': 1, '$db': 'x'})]))
        _, _, reply = read_reply(s)
        self.assertEqual((reply['ok'], reply['code'], reply['codeName']),
                         (0.0, 59, 'CommandNotFound'))
        self.assertIn('fooBarBaz', reply['errmsg'])

    def test_large_messages(self):
        coll = self.fresh()
        blob = 'x' * (1024 * 1024)
        docs = [{'_id': i, 'blob': blob} for i in range(60)]  # ~60 MB: several messages
        coll.insert_many(docs)
        got = list(coll.find({}, batch_size=1000))  # replies limited to ~16 MB each
        self.assertEqual(len(got), 60)
        self.assertTrue(all(d['blob'] == blob for d in got))


class TestConcurrency(Base):
    def test_parallel_clients(self):
        coll = self.fresh()
        coll.insert_one({'_id': 'counter', 'n': 0, 'd': Decimal128('0.00')})
        errors = []

        def worker(k):
            try:
                c = SERVER.client()
                mine = c[self.db.name][coll.name]
                for i in range(150):
                    mine.update_one({'_id': 'counter'},
                                    {'$inc': {'n': 1, 'd': Decimal128('0.01')}})
                    mine.insert_one({'_id': 'w%d-%d' % (k, i)})
                    if i % 25 == 0:
                        list(mine.find({'_id': {'$gte': 'w'}}).batch_size(50))
                c.close()
            except Exception as exc:  # pylint: disable=broad-except
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.assertEqual(errors, [])
        doc = coll.find_one({'_id': 'counter'})
        self.assertEqual(doc['n'], 1200)
        self.assertEqual(str(doc['d']), '12.00')
        self.assertEqual(len(list(coll.find({}, projection={'_id': 1}))), 1201)


class TestCDriver(unittest.TestCase):
    """libmongoc 1.23 (walfold's client): compile standin_c_probe.c and run it."""

    def test_c_probe(self):
        gcc = shutil.which('gcc') or shutil.which('cc')
        pkg = shutil.which('pkg-config')
        # servers.sh install-deps installs both: missing tools are a failure, not a skip.
        self.assertTrue(gcc and pkg, 'gcc or pkg-config not installed')
        flags = subprocess.run([pkg, '--cflags', '--libs', 'libmongoc-1.0'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(flags.returncode, 0,
                         'libmongoc-dev not installed (pkg-config libmongoc-1.0 failed)')
        tmp = tempfile.mkdtemp(prefix='walfold-c-probe-')
        self.addCleanup(shutil.rmtree, tmp, True)
        exe = os.path.join(tmp, 'standin_c_probe')
        cc = subprocess.run([gcc, '-O1', '-Wall', '-Werror', '-o', exe, C_PROBE] +
                            flags.stdout.decode().split(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(cc.returncode, 0, 'compiling the C probe failed:\n' +
                         cc.stdout.decode())
        run = subprocess.run([exe, SERVER.uri + '/?appname=c-probe', '5000', '500'],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        out = run.stdout.decode()
        failed = [line for line in out.splitlines() if line.startswith('FAIL')]
        self.assertEqual(failed, [], out)
        self.assertEqual(run.returncode, 0, out)
        self.assertIn('PROBE OK', out)
        print('\n    %d C probe checks passed' % out.count('PASS '), flush=True)


# ---------------------------------------------------------------------------------------------
# Process lifecycle (own instances)
# ---------------------------------------------------------------------------------------------
class TestLifecycle(unittest.TestCase):
    def _free_port(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def test_fixed_port_ready_file_stdout_and_sigterm(self):
        port = self._free_port()
        proc = StandinProcess(port)
        try:
            self.assertEqual(proc.port, port)
            self.assertEqual(proc.ready_content, '%d\n' % port)
            self.assertEqual(proc.stdout_line, 'listening on 127.0.0.1:%d' % port)
            c = proc.client()
            c.admin.command('ping')
            # A connected client must not keep the server from exiting.
            rc, took = proc.stop(signal.SIGTERM)
            self.assertEqual(rc, 0, proc.stderr_text())
            self.assertLess(took, 5)
            c.close()
        finally:
            proc.cleanup()

    def test_sigint_and_port_zero(self):
        proc = StandinProcess(0)
        try:
            self.assertGreater(proc.port, 0)
            self.assertEqual(proc.stdout_line, 'listening on 127.0.0.1:%d' % proc.port)
            s = socket.create_connection(('127.0.0.1', proc.port), timeout=5)
            rc, took = proc.stop(signal.SIGINT)
            s.close()
            self.assertEqual(rc, 0, proc.stderr_text())
            self.assertLess(took, 5)
        finally:
            proc.cleanup()

    def test_port_in_use_fails(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        s.listen(1)
        port = s.getsockname()[1]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                ready = os.path.join(tmp, 'r')
                run = subprocess.run([PYTHON, STANDIN, '--port', str(port), '--ready-file',
                                      ready], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     timeout=30)
                self.assertNotEqual(run.returncode, 0)
                self.assertFalse(os.path.exists(ready))
                self.assertIn(b'cannot listen', run.stderr)
        finally:
            s.close()


if __name__ == '__main__':
    unittest.main(verbosity=2 if '-v' in sys.argv else 1)
