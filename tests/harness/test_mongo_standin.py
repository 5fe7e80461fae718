#!/usr/bin/python3
"""Self-test for mongo_standin.py, the MongoDB stand-in used by walfold's tests.

Run:  /usr/bin/python3 tests/harness/test_mongo_standin.py [-v] [unittest args]

Starts the stand-in on a free loopback port and checks it through Debian's pymongo 3.11, raw
wire-protocol messages (OP_MSG kind-0/kind-1 sections, moreToCome, legacy OP_QUERY handshake)
and, when gcc and libmongoc-dev are installed, through the C driver (standin_c_probe.c).
Prints measured bulk-update throughput.  Exits non-zero if anything fails.
"""

import datetime
import decimal
import os
import re
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
    from bson import ObjectId
    from bson.codec_options import CodecOptions
    from bson.decimal128 import Decimal128, create_decimal128_context
    from bson.int64 import Int64
    from bson.son import SON
    import pymongo
    from pymongo import MongoClient, ReturnDocument, UpdateOne, InsertOne, DeleteOne
    from pymongo.errors import (BulkWriteError, DuplicateKeyError, OperationFailure,
                                WriteError)
    from pymongo.write_concern import WriteConcern
except ImportError as exc:  # pragma: no cover
    sys.stderr.write('test_mongo_standin: %s; run with /usr/bin/python3 and install '
                     'python3-pymongo\n' % exc)
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, 'mongo_standin.py')
C_PROBE = os.path.join(HERE, 'standin_c_probe.c')
PYTHON = '/usr/bin/python3'
D128 = create_decimal128_context()

SERVER = None
RESULTS = {}


def D(s):
    return Decimal128(s)


class StandinProcess(object):
    """One stand-in process on a loopback port, with its stderr kept in a temp file."""

    def __init__(self, port=0):
        self.tmp = tempfile.mkdtemp(prefix='walfold-standin-test-')
        self.ready = os.path.join(self.tmp, 'mongo.ready')
        self.stderr_path = os.path.join(self.tmp, 'stderr.log')
        self._stderr = open(self.stderr_path, 'wb')
        self.proc = subprocess.Popen(
            [PYTHON, STANDIN, '--port', str(port), '--ready-file', self.ready],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr)
        deadline = time.time() + 30
        content = ''
        while time.time() < deadline:
            if os.path.exists(self.ready):
                with open(self.ready) as f:
                    content = f.read()
                if content.endswith('\n'):
                    break
            if self.proc.poll() is not None:
                raise RuntimeError('stand-in exited early (rc %s):\n%s'
                                   % (self.proc.returncode, self.stderr_text()))
            time.sleep(0.05)
        else:
            self.kill()
            raise RuntimeError('stand-in did not become ready:\n' + self.stderr_text())
        self.ready_content = content
        self.port = int(content)
        self.stdout_line = self.proc.stdout.readline().decode().rstrip('\n')

    @property
    def uri(self):
        return 'mongodb://127.0.0.1:%d' % self.port

    def client(self, **kwargs):
        kwargs.setdefault('serverSelectionTimeoutMS', 10000)
        kwargs.setdefault('connectTimeoutMS', 10000)
        kwargs.setdefault('socketTimeoutMS', 120000)
        return MongoClient('127.0.0.1', self.port, **kwargs)

    def cpu_seconds(self):
        """User+system CPU time the stand-in process has used so far (Linux /proc)."""
        try:
            with open('/proc/%d/stat' % self.proc.pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
        except (OSError, ValueError, IndexError):
            return None

    def stderr_text(self):
        self._stderr.flush()
        with open(self.stderr_path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Send `sig`; returns (exit code, seconds taken)."""
        start = time.time()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = None
        return rc, time.time() - start

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self):
        self.kill()
        self.proc.stdout.close()
        self._stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


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

    def fresh(self, name=None):
        coll = self.db[name or self._testMethodName]
        coll.drop()
        return coll

    def assertD128(self, value, text):
        self.assertIs(type(value), Decimal128, 'expected Decimal128, got %r' % (value,))
        self.assertEqual(str(value), text)


# ---------------------------------------------------------------------------------------------
# Handshake, commands, wire protocol
# ---------------------------------------------------------------------------------------------
class TestHandshake(Base):
    def test_is_master_fields(self):
        for name in ('isMaster', 'ismaster', 'hello'):
            r = self.client.admin.command(name)
            self.assertIs(r['ismaster'], True)
            self.assertIs(r['isWritablePrimary'], True)
            self.assertEqual(r['maxWireVersion'], 13)
            self.assertEqual(r['minWireVersion'], 0)
            self.assertEqual(r['maxBsonObjectSize'], 16 * 1024 * 1024)
            self.assertEqual(r['maxMessageSizeBytes'], 48000000)
            self.assertEqual(r['maxWriteBatchSize'], 100000)
            self.assertEqual(r['logicalSessionTimeoutMinutes'], 30)
            self.assertIsInstance(r['connectionId'], int)
            self.assertNotIn('setName', r)  # standalone
            self.assertNotIn('msg', r)  # not mongos

    def test_ping_build_info(self):
        self.assertEqual(self.client.admin.command('ping')['ok'], 1.0)
        self.assertEqual(self.db.command('ping')['ok'], 1.0)
        info = self.client.admin.command('buildInfo')
        self.assertEqual(info['version'], '6.0.0')
        self.assertEqual(info['versionArray'][:3], [6, 0, 0])
        self.assertEqual(self.client.server_info()['version'], '6.0.0')

    def test_unknown_command_is_error_59(self):
        with self.assertRaises(OperationFailure) as cm:
            self.client.admin.command('walfoldBogusCommand')
        self.assertEqual(cm.exception.code, 59)
        self.assertIn('walfoldBogusCommand', str(cm.exception))
        with self.assertRaises(OperationFailure) as cm:
            self.db.command('getLastError')
        self.assertEqual(cm.exception.code, 59)
        time.sleep(0.2)
        self.assertIn('walfoldBogusCommand', SERVER.stderr_text())

    def test_end_sessions_and_sessions(self):
        coll = self.fresh()
        with self.client.start_session() as session:
            coll.insert_one({'_id': 1}, session=session)
            self.assertEqual(coll.find_one({'_id': 1}, session=session), {'_id': 1})
        self.assertEqual(self.client.admin.command('endSessions', [{'id': bson.Binary(
            b'0123456789abcdef', 4)}])['ok'], 1.0)

    def test_server_status(self):
        r = self.client.admin.command('serverStatus')
        self.assertEqual(r['version'], '6.0.0')
        self.assertGreaterEqual(r['connections']['current'], 1)

    def test_distinct_connection_ids(self):
        a, b = SERVER.client(), SERVER.client()
        try:
            ida = a.admin.command('isMaster')['connectionId']
            idb = b.admin.command('isMaster')['connectionId']
            self.assertNotEqual(ida, idb)
        finally:
            a.close()
            b.close()


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
        self.assertEqual(coll.count_documents({'_id': 'fire-and-forget'}), 1)

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


# ---------------------------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------------------------
class TestInsertDelete(Base):
    def test_insert_duplicate_ordered_and_unordered(self):
        coll = self.fresh()
        with self.assertRaises(BulkWriteError) as cm:
            coll.insert_many([{'_id': 1}, {'_id': 2}, {'_id': 1}, {'_id': 3}], ordered=True)
        details = cm.exception.details
        self.assertEqual(details['nInserted'], 2)
        self.assertEqual(details['writeErrors'][0]['index'], 2)
        self.assertEqual(details['writeErrors'][0]['code'], 11000)
        self.assertEqual(coll.count_documents({}), 2)
        with self.assertRaises(BulkWriteError) as cm:
            coll.insert_many([{'_id': 1}, {'_id': 4}, {'_id': 2}, {'_id': 5}], ordered=False)
        details = cm.exception.details
        self.assertEqual(details['nInserted'], 2)
        self.assertEqual([e['index'] for e in details['writeErrors']], [0, 2])
        self.assertEqual(sorted(d['_id'] for d in coll.find()), [1, 2, 4, 5])
        with self.assertRaises(DuplicateKeyError):
            coll.insert_one({'_id': 5})

    def test_insert_command_reply_shape(self):
        coll = self.fresh()
        r = self.db.command(SON([('insert', coll.name),
                                 ('documents', [{'_id': 1}, {'_id': 1}, {'_id': 2}]),
                                 ('ordered', False)]))
        self.assertEqual(r['n'], 2)
        self.assertEqual(len(r['writeErrors']), 1)
        err = r['writeErrors'][0]
        self.assertEqual((err['index'], err['code']), (1, 11000))
        self.assertIn('E11000 duplicate key error', err['errmsg'])

    def test_numeric_ids_collide_across_types(self):
        coll = self.fresh()
        coll.insert_one({'_id': Int64(7)})
        with self.assertRaises(DuplicateKeyError):
            coll.insert_one({'_id': 7})
        self.assertEqual(coll.find_one({'_id': 7.0})['_id'], 7)

    def test_generated_object_id_first(self):
        coll = self.fresh()
        coll.insert_one({'a': 1})
        r = self.db.command('insert', coll.name, documents=[{'b': 1}])
        self.assertEqual(r['n'], 1)
        for doc in coll.find():
            self.assertEqual(list(doc)[0], '_id')
            self.assertIsInstance(doc['_id'], ObjectId)

    def test_delete(self):
        coll = self.fresh()
        coll.insert_many([{'_id': i, 'g': i % 3} for i in range(9)])
        self.assertEqual(coll.delete_one({'g': 1}).deleted_count, 1)
        self.assertEqual(coll.delete_many({'g': 1}).deleted_count, 2)
        self.assertEqual(coll.delete_many({'g': {'$in': [0, 2]}}).deleted_count, 6)
        self.assertEqual(coll.count_documents({}), 0)
        r = self.db.command('delete', coll.name, deletes=[{'q': {}, 'limit': 2}])
        self.assertEqual(r['writeErrors'][0]['code'], 9)

    def test_w_majority_and_w0(self):
        coll = self.fresh()
        maj = coll.with_options(write_concern=WriteConcern(w='majority', wtimeout=5000, j=True))
        maj.insert_one({'_id': 1, 'n': 0})
        self.assertEqual(maj.update_one({'_id': 1}, {'$inc': {'n': 1}}).modified_count, 1)
        unack = coll.with_options(write_concern=WriteConcern(w=0))
        unack.insert_one({'_id': 2})
        unack.update_one({'_id': 1}, {'$inc': {'n': 1}})
        deadline = time.time() + 5
        while time.time() < deadline and coll.find_one({'_id': 1})['n'] != 2:
            time.sleep(0.05)
        self.assertEqual(coll.find_one({'_id': 1})['n'], 2)
        self.assertEqual(coll.count_documents({'_id': 2}), 1)


class TestUpdate(Base):
    def test_upsert_ordered_stops_and_unordered_continues(self):
        for ordered in (True, False):
            coll = self.fresh('upsert_%s' % ordered)
            coll.insert_one({'_id': 1, 'acct_lsn': {'17': Int64(100)}})
            updates = [
                # no doc 2 -> upsert
                {'q': {'_id': 2, 'acct_lsn.17': {'$not': {'$gte': Int64(5)}}},
                 'u': {'$max': {'acct_lsn.17': Int64(5)}, '$inc': {'bal': D('1.00')}},
                 'upsert': True},
                # doc 1 exists but the LSN guard fails -> upsert collides on _id -> 11000
                {'q': {'_id': 1, 'acct_lsn.17': {'$not': {'$gte': Int64(50)}}},
                 'u': {'$max': {'acct_lsn.17': Int64(50)}}, 'upsert': True},
                {'q': {'_id': 3}, 'u': {'$set': {'x': 1}}, 'upsert': True},
            ]
            r = self.db.command(SON([('update', coll.name), ('updates', updates),
                                     ('ordered', ordered),
                                     ('writeConcern', {'w': 'majority'})]))
            self.assertEqual(r['writeErrors'][0]['index'], 1)
            self.assertEqual(r['writeErrors'][0]['code'], 11000)
            self.assertEqual(len(r['writeErrors']), 1)
            if ordered:
                self.assertEqual(r['n'], 1)
                self.assertEqual(r['upserted'], [{'index': 0, '_id': 2}])
                self.assertIsNone(coll.find_one({'_id': 3}))
            else:
                self.assertEqual(r['n'], 2)
                self.assertEqual(r['upserted'], [{'index': 0, '_id': 2}, {'index': 2, '_id': 3}])
                self.assertEqual(coll.find_one({'_id': 3}), {'_id': 3, 'x': 1})
            self.assertEqual(r['nModified'], 0)
            doc2 = coll.find_one({'_id': 2})
            self.assertEqual(doc2['acct_lsn'], {'17': 5})
            self.assertIs(type(doc2['acct_lsn']['17']), Int64)
            self.assertD128(doc2['bal'], '1.00')
            self.assertEqual(coll.find_one({'_id': 1})['acct_lsn']['17'], 100)

    def test_upsert_seed_and_set_on_insert(self):
        coll = self.fresh()
        coll.update_one({'k.a': 1, 'b': {'$eq': 'x'}, 'c': {'$gt': 5}},
                        {'$set': {'s': 1}, '$setOnInsert': {'created': 'now'}}, upsert=True)
        doc = coll.find_one()
        self.assertEqual(list(doc)[0], '_id')
        self.assertEqual({k: v for k, v in doc.items() if k != '_id'},
                         {'k': {'a': 1}, 'b': 'x', 's': 1, 'created': 'now'})
        r = coll.update_one({'_id': doc['_id']}, {'$set': {'s': 2},
                                                  '$setOnInsert': {'created': 'later'}},
                            upsert=True)
        self.assertEqual((r.matched_count, r.modified_count, r.upserted_id), (1, 1, None))
        self.assertEqual(coll.find_one()['created'], 'now')

    def test_n_modified_counts_real_changes(self):
        coll = self.fresh()
        coll.insert_many([{'_id': i, 'v': 1} for i in range(4)])
        r = coll.update_many({}, {'$set': {'v': 1}})
        self.assertEqual((r.matched_count, r.modified_count), (4, 0))
        r = coll.update_many({'_id': {'$lt': 2}}, {'$set': {'v': 2}})
        self.assertEqual((r.matched_count, r.modified_count), (2, 2))
        r = coll.update_one({'_id': 0}, {'$set': {'v': Int64(2)}})  # type change is a change
        self.assertEqual(r.modified_count, 1)
        r = coll.update_one({'_id': 0}, {'$inc': {'v': 0}})
        self.assertEqual(r.modified_count, 0)
        r = coll.update_one({'_id': 'nope'}, {'$set': {'v': 1}})
        self.assertEqual((r.matched_count, r.modified_count), (0, 0))

    def test_replacement(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'a': 1, 'b': 2})
        coll.replace_one({'_id': 1}, {'c': 3})
        self.assertEqual(coll.find_one({'_id': 1}), {'_id': 1, 'c': 3})
        r = coll.replace_one({'name': 'z'}, {'name': 'z', 'v': 1}, upsert=True)
        self.assertIsNotNone(r.upserted_id)
        with self.assertRaises(WriteError) as cm:
            coll.replace_one({'_id': 1}, {'_id': 2, 'c': 3})
        self.assertEqual(cm.exception.code, 66)

    def test_decimal128_inc(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'zero_int': 0, 'zero_dec': D('0'), 'i32': 5, 'i64': Int64(5),
                         'dbl': 1.5, 'big': D('9999999999999999999999999999999999')})
        amt = D('100.5000')
        coll.update_one({'_id': 1}, {'$inc': {'missing': amt, 'zero_int': amt, 'zero_dec': amt,
                                             'i32': D('0.1'), 'i64': D('-7.25'), 'dbl': D('1'),
                                             'big': D('1')}})
        doc = coll.find_one({'_id': 1})
        self.assertD128(doc['missing'], '100.5000')
        self.assertD128(doc['zero_int'], '100.5000')
        self.assertD128(doc['zero_dec'], '100.5000')
        self.assertD128(doc['i32'], '5.1')
        self.assertD128(doc['i64'], '-2.25')
        expected_dbl = D128.add(D128.create_decimal_from_float(1.5), decimal.Decimal(1))
        self.assertD128(doc['dbl'], str(expected_dbl))
        # 34 significant digits, round half even (like MongoDB's Decimal128)
        self.assertD128(doc['big'], '1.000000000000000000000000000000000E+34')
        for _ in range(10):
            coll.update_one({'_id': 1}, {'$inc': {'tenths': D('0.1')}})
        self.assertD128(coll.find_one({'_id': 1})['tenths'], '1.0')
        coll.update_one({'_id': 1}, {'$inc': {'zero_int': D('-100.5000')}})
        self.assertD128(coll.find_one({'_id': 1})['zero_int'], '0.0000')
        coll.update_one({'_id': 1}, {'$mul': {'zero_dec': D('2')}})
        self.assertD128(coll.find_one({'_id': 1})['zero_dec'], '201.0000')

    def test_integer_types(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'i32': 2147483647, 'small64': Int64(1), 'dbl': 1.0,
                         'plain': 1})
        coll.update_one({'_id': 1}, {'$inc': {'i32': 1, 'small64': 1, 'dbl': 1, 'plain': 1,
                                             'new64': Int64(3), 'new32': 3}})
        doc = coll.find_one({'_id': 1})
        self.assertEqual(doc['i32'], 2147483648)
        self.assertIs(type(doc['i32']), Int64)  # int32 overflow promotes to int64
        self.assertIs(type(doc['small64']), Int64)
        self.assertEqual(doc['small64'], 2)
        self.assertIs(type(doc['dbl']), float)
        self.assertIs(type(doc['plain']), int)
        self.assertIs(type(doc['new64']), Int64)
        self.assertIs(type(doc['new32']), int)
        # Values sent as int64 come back as int64 even when small; int32 stays int32.
        coll.insert_one({'_id': 2, 'a': Int64(0), 'b': 0, 'c': [Int64(1), 2],
                         'd': {'e': Int64(-1)}})
        doc = coll.find_one({'_id': 2})
        self.assertEqual([type(doc['a']), type(doc['b']), type(doc['c'][0]), type(doc['c'][1]),
                          type(doc['d']['e'])], [Int64, int, Int64, int, Int64])

    def test_max_min_int64(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'lsn': Int64(100), 'acct_lsn': {'17': Int64(10)}})
        r = coll.update_one({'_id': 1}, {'$max': {'lsn': Int64(50)}})
        self.assertEqual(r.modified_count, 0)
        coll.update_one({'_id': 1}, {'$max': {'lsn': Int64(2 ** 40), 'acct_lsn.17': Int64(11),
                                             'acct_lsn.3': Int64(7)},
                                    '$min': {'low': Int64(5)}})
        coll.update_one({'_id': 1}, {'$min': {'low': Int64(3)}})
        coll.update_one({'_id': 1}, {'$min': {'low': Int64(4)}})
        doc = coll.find_one({'_id': 1})
        self.assertEqual(doc['lsn'], 2 ** 40)
        self.assertIs(type(doc['lsn']), Int64)
        self.assertEqual(doc['acct_lsn'], {'17': 11, '3': 7})  # a sub-document, not an array
        self.assertIs(type(doc['acct_lsn']['3']), Int64)
        self.assertEqual(doc['low'], 3)
        self.assertIs(type(doc['low']), Int64)
        coll.update_one({'_id': 2}, {'$max': {'acct_lsn.17': Int64(9)}}, upsert=True)
        self.assertEqual(coll.find_one({'_id': 2})['acct_lsn'], {'17': 9})

    def test_push_each_sort_slice(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'recent': []})

        def push(items, slice_):
            coll.update_one({'_id': 1}, {'$push': {'recent': {
                '$each': items, '$sort': SON([('created_at_us', -1), ('id', -1)]),
                '$slice': slice_}}})
            return [(d['created_at_us'], d['id']) for d in coll.find_one({'_id': 1})['recent']]

        got = push([{'created_at_us': Int64(5), 'id': 1}, {'created_at_us': Int64(9), 'id': 2},
                    {'created_at_us': Int64(5), 'id': 3}], 10)
        self.assertEqual(got, [(9, 2), (5, 3), (5, 1)])
        got = push([{'created_at_us': Int64(7), 'id': 4}, {'created_at_us': Int64(1), 'id': 5}],
                   3)
        self.assertEqual(got, [(9, 2), (7, 4), (5, 3)])
        got = push([{'created_at_us': Int64(8), 'id': 6}], -2)
        self.assertEqual(got, [(7, 4), (5, 3)])
        self.assertIs(type(coll.find_one({'_id': 1})['recent'][0]['created_at_us']), Int64)
        coll.update_one({'_id': 1}, {'$push': {'plain': 3}})
        coll.update_one({'_id': 1}, {'$push': {'plain': {'$each': [1, 2], '$position': 0}}})
        coll.update_one({'_id': 1}, {'$push': {'plain': {'$each': [0], '$sort': 1}}})
        coll.update_one({'_id': 1}, {'$push': {'plain': {'$each': [], '$sort': -1,
                                                         '$slice': 3}}})
        self.assertEqual(coll.find_one({'_id': 1})['plain'], [3, 2, 1])
        coll.insert_one({'_id': 2, 'recent': 'not an array'})
        with self.assertRaises(WriteError) as cm:
            coll.update_one({'_id': 2}, {'$push': {'recent': 1}})
        self.assertEqual(cm.exception.code, 2)

    def test_push_sort_decimal_and_missing_fields(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'a': []})
        coll.update_one({'_id': 1}, {'$push': {'a': {'$each': [
            {'p': D('1.50')}, {'p': 2}, {'q': 1}, {'p': D('-3')}, {'p': 1.25}],
            '$sort': {'p': 1}}}})
        self.assertEqual(coll.find_one()['a'], [{'q': 1}, {'p': D('-3')}, {'p': 1.25},
                                                {'p': D('1.50')}, {'p': 2}])

    def test_pull_add_to_set_unset_rename_pop(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'nums': [1, 5, 7, 5, 2], 'subs': [
            {'id': 1, 'v': 'a'}, {'id': 2, 'v': 'b'}, {'id': 3, 'v': 'c'}],
            'tags': ['x'], 'nested': {'keep': 1, 'drop': 2}, 'old': 'name',
            'stack': [1, 2, 3]})
        coll.update_one({'_id': 1}, {'$pull': {'nums': 5, 'subs': {'id': {'$in': [1, 3]}}}})
        doc = coll.find_one()
        self.assertEqual(doc['nums'], [1, 7, 2])
        self.assertEqual(doc['subs'], [{'id': 2, 'v': 'b'}])
        coll.update_one({'_id': 1}, {'$pull': {'nums': {'$gte': 2}}})
        self.assertEqual(coll.find_one()['nums'], [1])
        coll.update_one({'_id': 1}, {'$addToSet': {'tags': 'x'}})
        coll.update_one({'_id': 1}, {'$addToSet': {'tags': 'y', 'nums': Int64(1)}})
        coll.update_one({'_id': 1}, {'$addToSet': {'tags': {'$each': ['y', 'z', 'z']}}})
        coll.update_one({'_id': 1}, {'$pullAll': {'stack': [1, 3]}})
        doc = coll.find_one()
        self.assertEqual(doc['tags'], ['x', 'y', 'z'])
        self.assertEqual(doc['nums'], [1])
        self.assertEqual(doc['stack'], [2])
        coll.update_one({'_id': 1}, {'$unset': {'nested.drop': '', 'absent.path': ''},
                                     '$rename': {'old': 'renamed'},
                                     '$pop': {'stack': 1}})
        doc = coll.find_one()
        self.assertEqual(doc['nested'], {'keep': 1})
        self.assertEqual(doc['renamed'], 'name')
        self.assertNotIn('old', doc)
        self.assertNotIn('absent', doc)
        self.assertEqual(doc['stack'], [])
        coll.update_one({'_id': 1}, {'$currentDate': {'touched': True}})
        self.assertIsInstance(coll.find_one()['touched'], datetime.datetime)

    def test_array_filters_and_positional(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'items': [{'id': 1, 'q': 1}, {'id': 2, 'q': 1},
                                             {'id': 3, 'q': 1}]})
        coll.update_one({'_id': 1}, {'$inc': {'items.$[it].q': 10}},
                        array_filters=[{'it.id': {'$gte': 2}}])
        self.assertEqual([i['q'] for i in coll.find_one()['items']], [1, 11, 11])
        coll.update_one({'_id': 1}, {'$set': {'items.$[].seen': True}})
        self.assertTrue(all(i['seen'] for i in coll.find_one()['items']))
        coll.update_one({'_id': 1, 'items.id': 3}, {'$set': {'items.$.q': 0}})
        self.assertEqual([i['q'] for i in coll.find_one()['items']], [1, 11, 0])

    def test_update_errors(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 's': 'str', 'a': {'b': 1}})
        cases = [
            ({'$set': {'a': 1}, '$inc': {'a.b': 1}}, 40),   # conflicting paths
            ({'$foo': {'a': 1}}, 9),                         # unknown modifier
            ({'$inc': {'x': 'one'}}, 14),                    # non-numeric argument
            ({'$inc': {'s': 1}}, 14),                        # non-numeric target
            ({'$set': {'_id': 2}}, 66),                      # immutable _id
            ({'$set': {'s.x': 1}}, 28),                      # path through a scalar
        ]
        for update, code in cases:
            with self.assertRaises(WriteError, msg=str(update)) as cm:
                coll.update_one({'_id': 1}, update)
            self.assertEqual(cm.exception.code, code, '%s -> %s' % (update, cm.exception))
        self.assertEqual(coll.find_one(), {'_id': 1, 's': 'str', 'a': {'b': 1}})
        coll.update_one({'_id': 1}, {'$set': {'_id': 1, 'ok': True}})  # same _id is fine
        with self.assertRaises(OperationFailure) as cm:
            coll.find_one({'a': {'$bogus': 1}})
        self.assertEqual(cm.exception.code, 2)

    def test_update_many_and_multi(self):
        coll = self.fresh()
        coll.insert_many([{'_id': i, 'g': i % 2, 'v': Int64(0)} for i in range(10)])
        r = coll.update_many({'g': 1}, {'$inc': {'v': Int64(5)}})
        self.assertEqual((r.matched_count, r.modified_count), (5, 5))
        self.assertEqual(sum(d['v'] for d in coll.find()), 25)
        res = coll.bulk_write([UpdateOne({'_id': 0}, {'$set': {'x': 1}}),
                               InsertOne({'_id': 100}), DeleteOne({'_id': 1}),
                               UpdateOne({'_id': 200}, {'$set': {'x': 2}}, upsert=True)])
        self.assertEqual((res.matched_count, res.inserted_count, res.deleted_count,
                          res.upserted_count), (1, 1, 1, 1))

    def test_equality_finds_follow_writes(self):
        # Equality finds on a top-level field are served from a per-field index of the stored
        # documents: it must follow inserts, updates (also ones that move a document to
        # another value), upserts, deletes and drops, and keep the natural order.
        coll = self.fresh()
        coll.insert_many([{'_id': i, 'a': i % 3, 'k': 'x' if i % 2 else 'y'} for i in range(12)])
        self.assertEqual([d['_id'] for d in coll.find({'a': 1})], [1, 4, 7, 10])
        coll.update_one({'_id': 4}, {'$set': {'a': 2}})
        coll.update_one({'_id': 5}, {'$set': {'a': 1}})
        coll.update_one({'_id': 20}, {'$set': {'a': 1}}, upsert=True)
        coll.delete_one({'_id': 7})
        coll.insert_one({'_id': 7, 'a': 1})
        coll.update_one({'_id': 10}, {'$set': {'a': [0, 1]}})   # arrays match by element
        coll.update_one({'_id': 1}, {'$set': {'a': D('1.0')}})  # Decimal128 equals 1
        coll.update_one({'_id': 0}, {'$set': {'a': True}})      # a bool is not 1
        coll.update_one({'_id': 3}, {'$unset': {'a': ''}})
        self.assertEqual([d['_id'] for d in coll.find({'a': 1})], [1, 5, 10, 20, 7])
        self.assertEqual(coll.count_documents({'a': 1, 'k': 'x'}), 2)  # 7 came back without k
        self.assertEqual([d['_id'] for d in coll.find({'k': 'y', 'a': 2})], [2, 4, 8])
        coll.replace_one({'_id': 2}, {'k': 'x', 'a': 2})
        self.assertEqual([d['_id'] for d in coll.find({'k': 'y', 'a': 2})], [4, 8])
        # $in lists of ints and strings are tested as sets (a bool is not 1, Decimal128 1.0 is).
        self.assertEqual(sorted(d['_id'] for d in coll.find({'_id': {'$in': [4, 5, 'x', 99]}})),
                         [4, 5])
        self.assertEqual(sorted(d['_id'] for d in coll.find({'a': {'$in': [1, 'zz']}})),
                         [1, 5, 7, 10, 20])
        self.assertEqual(sorted(d['_id'] for d in coll.find({'a': {'$nin': [1, 2]}})),
                         [0, 3, 6, 9])
        coll.drop()
        self.assertEqual(list(coll.find({'a': 1})), [])
        coll.insert_one({'_id': 1, 'a': 1})
        self.assertEqual([d['_id'] for d in coll.find({'a': 1})], [1])

    def test_find_and_modify(self):
        coll = self.fresh()
        coll.insert_many([{'_id': i, 'v': i} for i in range(5)])
        doc = coll.find_one_and_update({'v': {'$gte': 2}}, {'$inc': {'v': 10}},
                                       sort=[('v', -1)], return_document=ReturnDocument.AFTER)
        self.assertEqual(doc, {'_id': 4, 'v': 14})
        doc = coll.find_one_and_update({'_id': 1}, {'$set': {'v': 'x'}}, projection={'_id': 0})
        self.assertEqual(doc, {'v': 1})
        doc = coll.find_one_and_update({'_id': 9}, {'$set': {'v': 9}}, upsert=True,
                                       return_document=ReturnDocument.AFTER)
        self.assertEqual(doc, {'_id': 9, 'v': 9})
        doc = coll.find_one_and_delete({}, sort=[('_id', 1)])
        self.assertEqual(doc['_id'], 0)
        self.assertIsNone(coll.find_one_and_delete({'_id': 'none'}))
        self.assertEqual(coll.count_documents({}), 5)


# ---------------------------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------------------------
class TestQuery(Base):
    @classmethod
    def setUpClass(cls):
        super(TestQuery, cls).setUpClass()
        cls.coll = cls.db.q
        cls.coll.drop()
        docs = []
        for i in range(10):
            docs.append({'_id': i, 'lsn': Int64(i * 100), 'acct_lsn': {'17': Int64(i * 10),
                                                                        '3': Int64(5)},
                         'bal': D('%d.50' % i), 'tag': 'even' if i % 2 == 0 else 'odd'})
        docs.append({'_id': 10, 'tag': 'none'})  # no lsn / acct_lsn / bal
        cls.coll.insert_many(docs)

    def ids(self, flt, **kwargs):
        return sorted(d['_id'] for d in self.coll.find(flt, **kwargs))

    def test_int64_comparisons(self):
        self.assertEqual(self.ids({'lsn': {'$lt': Int64(300)}}), [0, 1, 2])
        self.assertEqual(self.ids({'lsn': {'$lte': 300}}), [0, 1, 2, 3])
        self.assertEqual(self.ids({'lsn': {'$gt': 700.5}}), [8, 9])
        self.assertEqual(self.ids({'lsn': {'$gte': Int64(800)}}), [8, 9])
        self.assertEqual(self.ids({'lsn': {'$ne': 0}}), list(range(1, 11)))
        self.assertEqual(self.ids({'lsn': {'$in': [Int64(100), 200, 12345]}}), [1, 2])
        self.assertEqual(self.ids({'lsn': {'$nin': [Int64(100), 200]}}),
                         [0, 3, 4, 5, 6, 7, 8, 9, 10])
        self.assertEqual(self.ids({'lsn': {'$exists': False}}), [10])
        self.assertEqual(self.ids({'lsn': None}), [10])
        self.assertEqual(self.ids({'lsn': {'$gte': None}}), [10])  # null/missing
        self.assertEqual(self.ids({'lsn': {'$gt': None}}), [])
        self.assertEqual(self.ids({'lsn': {'$gte': 'a'}}), [])  # type bracketing

    def test_digit_keys_in_sub_documents(self):
        self.assertEqual(self.ids({'acct_lsn.17': {'$not': {'$gte': 30}}}), [0, 1, 2, 10])
        self.assertEqual(self.ids({'acct_lsn.17': {'$gte': Int64(30), '$lt': 50}}), [3, 4])
        self.assertEqual(self.ids({'acct_lsn.3': 5, 'acct_lsn.17': 90}), [9])
        self.assertEqual(self.ids({'acct_lsn.17': {'$exists': True}}), list(range(10)))

    def test_logical_operators(self):
        self.assertEqual(self.ids({'$or': [{'lsn': 0}, {'tag': 'none'}]}), [0, 10])
        self.assertEqual(self.ids({'$and': [{'lsn': {'$gt': 100}}, {'tag': 'odd'}]}), [3, 5, 7, 9])
        self.assertEqual(self.ids({'$nor': [{'tag': 'odd'}, {'tag': 'none'}]}), [0, 2, 4, 6, 8])
        self.assertEqual(self.ids({'tag': {'$not': {'$in': ['odd', 'even']}}}), [10])

    def test_decimal128_compare_and_sort(self):
        self.assertEqual(self.ids({'bal': {'$gt': D('7.5')}}), [8, 9])
        self.assertEqual(self.ids({'bal': {'$gte': 7.5}}), [7, 8, 9])
        self.assertEqual(self.ids({'bal': {'$lt': 2}}), [0, 1])
        self.assertEqual(self.ids({'bal': D('3.5000')}), [3])  # numeric equality
        self.assertEqual(self.ids({'bal': {'$in': [D('4.5'), 5.5]}}), [4, 5])
        got = [d['_id'] for d in self.coll.find({'bal': {'$exists': True}}).sort('bal', -1)]
        self.assertEqual(got, list(range(9, -1, -1)))
        got = [d['_id'] for d in self.coll.find().sort([('bal', 1), ('_id', -1)]).limit(3)]
        self.assertEqual(got, [10, 0, 1])  # missing sorts first

    def test_arrays_use_mongomock_path(self):
        coll = self.fresh('arrays')
        coll.insert_many([{'_id': 1, 'tags': ['a', 'b'], 'items': [{'x': 1}, {'x': 5}]},
                          {'_id': 2, 'tags': ['c'], 'items': [{'x': 2}]}])
        self.assertEqual([d['_id'] for d in coll.find({'tags': 'a'})], [1])
        self.assertEqual([d['_id'] for d in coll.find({'items.x': {'$gt': 4}})], [1])
        self.assertEqual([d['_id'] for d in coll.find({'items': {'$elemMatch': {'x': 2}}})], [2])
        self.assertEqual([d['_id'] for d in coll.find({'tags': {'$size': 1}})], [2])
        self.assertEqual([d['_id'] for d in coll.find({'tags': {'$regex': '^c'}})], [2])

    def test_projection_skip_limit_sort(self):
        got = list(self.coll.find({'lsn': {'$exists': True}}, {'lsn': 1, '_id': 0},
                                  sort=[('lsn', -1)], skip=2, limit=3))
        self.assertEqual(got, [{'lsn': 700}, {'lsn': 600}, {'lsn': 500}])
        got = self.coll.find_one({'_id': 1}, {'acct_lsn': 0, 'bal': 0})
        self.assertEqual(got, {'_id': 1, 'lsn': 100, 'tag': 'odd'})
        got = self.coll.find_one({'_id': 2}, {'acct_lsn.17': 1})
        self.assertEqual(got, {'_id': 2, 'acct_lsn': {'17': 20}})
        # An empty projection returns whole documents (pymongo 3 itself rewrites {} to
        # {_id: 1}, so send the command directly).
        r = self.db.command('find', self.coll.name, filter={'_id': 3}, projection={})
        self.assertEqual(r['cursor']['firstBatch'], [self.coll.find_one({'_id': 3})])
        with self.assertRaises(OperationFailure):
            self.coll.find_one({}, {'a': 1, 'b': 0})  # cannot mix inclusion and exclusion

    def test_dates_millisecond_round_trip(self):
        coll = self.fresh('dates')
        t = datetime.datetime(2024, 2, 29, 23, 59, 58, 123456)
        coll.insert_one({'_id': 1, 't': t, 'old': datetime.datetime(1969, 12, 31, 23, 59, 59)})
        doc = coll.find_one({'t': {'$gte': datetime.datetime(2024, 2, 29)}})
        self.assertEqual(doc['t'], t.replace(microsecond=123000))
        self.assertEqual(doc['old'], datetime.datetime(1969, 12, 31, 23, 59, 59))
        coll.update_one({'_id': 1}, {'$max': {'t': datetime.datetime(2030, 1, 1)}})
        self.assertEqual(coll.find_one()['t'], datetime.datetime(2030, 1, 1))

    def test_cursors_get_more_kill(self):
        coll = self.fresh('cursors')
        coll.insert_many([{'_id': i} for i in range(1000)])
        self.assertEqual([d['_id'] for d in coll.find().sort('_id', 1).batch_size(7)],
                         list(range(1000)))
        r = self.db.command('find', coll.name, batchSize=10, sort={'_id': -1})
        cid = r['cursor']['id']
        self.assertIs(type(cid), Int64)
        self.assertNotEqual(cid, 0)
        self.assertEqual(r['cursor']['ns'], '%s.%s' % (self.db.name, coll.name))
        self.assertEqual([d['_id'] for d in r['cursor']['firstBatch']], list(range(999, 989, -1)))
        r = self.db.command('getMore', cid, collection=coll.name, batchSize=5)
        self.assertEqual([d['_id'] for d in r['cursor']['nextBatch']], list(range(989, 984, -1)))
        r = self.db.command('killCursors', coll.name, cursors=[cid])
        self.assertEqual(r['cursorsKilled'], [cid])
        with self.assertRaises(OperationFailure) as cm:
            self.db.command('getMore', cid, collection=coll.name)
        self.assertEqual(cm.exception.code, 43)
        r = self.db.command('find', coll.name, limit=5, singleBatch=True)
        self.assertEqual((len(r['cursor']['firstBatch']), r['cursor']['id']), (5, 0))
        r = self.db.command('find', coll.name)
        self.assertEqual(len(r['cursor']['firstBatch']), 101)  # default first batch
        cur = coll.find().batch_size(3)
        next(cur)
        cur.close()  # killCursors from the driver
        self.assertEqual(len(list(coll.find({'_id': {'$gte': 990}}).limit(4))), 4)

    def test_count_distinct_aggregate(self):
        self.assertEqual(self.coll.count_documents({}), 11)
        self.assertEqual(self.coll.count_documents({'tag': 'odd'}), 5)
        self.assertEqual(self.coll.count_documents({'tag': 'odd'}, skip=1, limit=2), 2)
        self.assertEqual(self.coll.estimated_document_count(), 11)
        self.assertEqual(self.db.command('count', self.coll.name, query={'tag': 'even'})['n'], 5)
        self.assertEqual(self.coll.distinct('tag'), ['even', 'none', 'odd'])
        self.assertEqual(self.coll.distinct('acct_lsn.3'), [5])
        got = list(self.coll.aggregate([
            {'$match': {'lsn': {'$exists': True}}},
            {'$group': {'_id': '$tag', 'n': {'$sum': 1}, 'total': {'$sum': '$bal'},
                        'maxLsn': {'$max': '$lsn'}}},
            {'$sort': {'_id': 1}}]))
        self.assertEqual([d['_id'] for d in got], ['even', 'odd'])
        self.assertEqual(list(got[0])[0], '_id')
        self.assertEqual(got[0]['n'], 5)
        self.assertEqual(got[0]['total'], D('22.50'))
        self.assertEqual(got[1]['maxLsn'], 900)
        got = list(self.coll.aggregate([{'$match': {'tag': 'odd'}}, {'$sort': {'lsn': -1}},
                                        {'$limit': 2}, {'$project': {'lsn': 1, '_id': 0}}]))
        self.assertEqual(got, [{'lsn': 900}, {'lsn': 700}])
        self.assertEqual(list(self.coll.aggregate([{'$count': 'n'}])), [{'n': 11}])
        got = list(self.coll.aggregate([{'$match': {}}], batchSize=2))
        self.assertEqual(len(got), 11)


# ---------------------------------------------------------------------------------------------
# Catalogue: collections, databases, indexes
# ---------------------------------------------------------------------------------------------
class TestCatalogue(Base):
    def test_collections_and_databases(self):
        db = self.client['selftest_catalogue_db']
        self.client.drop_database(db.name)
        db.create_collection('made')
        with self.assertRaises(OperationFailure) as cm:
            db.command('create', 'made')
        self.assertEqual(cm.exception.code, 48)
        db.implicit.insert_one({'_id': 1})
        self.assertEqual(sorted(db.list_collection_names()), ['implicit', 'made'])
        self.assertIn(db.name, self.client.list_database_names())
        infos = list(db.list_collections(filter={'name': 'made'}))
        self.assertEqual([(i['name'], i['type']) for i in infos], [('made', 'collection')])
        db.implicit.delete_many({})
        self.assertIn('implicit', db.list_collection_names())  # empty but still exists
        db.drop_collection('made')
        self.assertEqual(db.list_collection_names(), ['implicit'])
        with self.assertRaises(OperationFailure) as cm:
            db.command('drop', 'made')
        self.assertEqual(cm.exception.code, 26)
        self.client.admin.command('renameCollection', '%s.implicit' % db.name,
                                  to='%s.renamed' % db.name)
        self.assertEqual(db.list_collection_names(), ['renamed'])
        self.client.drop_database(db.name)
        self.assertNotIn(db.name, self.client.list_database_names())
        self.assertEqual(db.list_collection_names(), [])

    def test_indexes(self):
        coll = self.fresh()
        coll.insert_many([{'_id': 1, 'email': 'a'}, {'_id': 2, 'email': 'b'},
                          {'_id': 3, 'other': 1}])
        name = coll.create_index([('email', pymongo.ASCENDING)], unique=True)
        self.assertEqual(name, 'email_1')
        coll.create_index([('created_at_us', -1), ('id', -1)], name='recent')
        info = coll.index_information()
        self.assertEqual(sorted(info), ['_id_', 'email_1', 'recent'])
        self.assertTrue(info['email_1']['unique'])
        self.assertEqual(info['recent']['key'], [('created_at_us', -1), ('id', -1)])
        with self.assertRaises(DuplicateKeyError) as cm:
            coll.insert_one({'_id': 4, 'email': 'a'})
        self.assertIn('email_1', str(cm.exception))
        with self.assertRaises(DuplicateKeyError):
            coll.insert_one({'_id': 5})  # second document without email: null is a value
        with self.assertRaises(WriteError) as cm:
            coll.update_one({'_id': 2}, {'$set': {'email': 'a'}})
        self.assertEqual(cm.exception.code, 11000)
        coll.update_one({'_id': 2}, {'$set': {'email': 'c'}})
        coll.insert_one({'_id': 6, 'email': 'b'})  # 'b' was freed by the update
        coll.delete_one({'_id': 6})
        coll.insert_one({'_id': 7, 'email': 'b'})  # and freed again by the delete
        with self.assertRaises(OperationFailure) as cm:
            coll.create_index([('other', 1)], name='recent')
        self.assertEqual(cm.exception.code, 86)
        coll.drop_index('email_1')
        coll.insert_one({'_id': 8, 'email': 'a'})
        with self.assertRaises(OperationFailure) as cm:
            coll.create_index('email', unique=True)
        self.assertEqual(cm.exception.code, 11000)
        self.assertEqual(sorted(coll.index_information()), ['_id_', 'recent'])
        with self.assertRaises(OperationFailure) as cm:
            coll.drop_index('_id_')
        self.assertEqual(cm.exception.code, 72)
        coll.drop_indexes()
        self.assertEqual(sorted(coll.index_information()), ['_id_'])
        self.assertEqual(list(self.db['no_such_collection'].list_indexes()), [])

    def test_validator(self):
        coll = self.fresh()
        coll.insert_one({'_id': 1, 'n': 1})
        self.db.command('collMod', coll.name, validator={'_id': {'$ne': 2}})
        with self.assertRaises(WriteError) as cm:
            coll.insert_one({'_id': 2})
        self.assertEqual(cm.exception.code, 121)
        with self.assertRaises(WriteError) as cm:
            coll.update_one({'_id': 2}, {'$set': {'n': 1}}, upsert=True)
        self.assertEqual(cm.exception.code, 121)
        coll.update_one({'_id': 1}, {'$inc': {'n': 1}})  # documents that pass are written
        self.db.command('collMod', coll.name, validator={'n': {'$lt': 5}})
        with self.assertRaises(WriteError) as cm:
            coll.update_one({'_id': 1}, {'$set': {'n': 9}})
        self.assertEqual(cm.exception.code, 121)
        self.assertEqual(coll.find_one({'_id': 1})['n'], 2)
        self.db.command('collMod', coll.name, validator={})
        coll.insert_one({'_id': 2, 'n': 9})
        with self.assertRaises(OperationFailure) as cm:
            self.db.command('collMod', 'no_such_collection', validator={})
        self.assertEqual(cm.exception.code, 26)

    def test_unique_index_in_bulk_upserts(self):
        coll = self.fresh()
        coll.create_index([('acct', 1), ('day', 1)], unique=True)
        reqs = [UpdateOne({'acct': i % 5, 'day': 1}, {'$inc': {'n': 1}}, upsert=True)
                for i in range(20)]
        res = coll.bulk_write(reqs)
        self.assertEqual((res.upserted_count, res.modified_count), (5, 15))
        self.assertEqual(sorted(d['n'] for d in coll.find()), [4] * 5)


# ---------------------------------------------------------------------------------------------
# Concurrency and throughput
# ---------------------------------------------------------------------------------------------
class TestConcurrency(Base):
    def test_parallel_clients(self):
        coll = self.fresh()
        coll.insert_one({'_id': 'counter', 'n': 0, 'd': D('0.00')})
        errors = []

        def worker(k):
            try:
                c = SERVER.client()
                mine = c[self.db.name][coll.name]
                for i in range(150):
                    mine.update_one({'_id': 'counter'}, {'$inc': {'n': 1, 'd': D('0.01')}})
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
        self.assertD128(doc['d'], '12.00')
        self.assertEqual(coll.count_documents({}), 1201)

    def test_bulk_update_throughput_pymongo(self):
        coll = self.fresh()
        n, accounts = 20000, 1000
        reqs = []
        for i in range(n):
            reqs.append(UpdateOne(
                {'_id': Int64(i % accounts), 'acct_lsn.17': {'$not': {'$gte': Int64(i + 1)}}},
                {'$inc': {'balance': D('100.5000'), 'n': 1},
                 '$max': {'lsn': Int64(i), 'acct_lsn.17': Int64(i)},
                 '$setOnInsert': {'created': datetime.datetime(2024, 1, 1)},
                 '$push': {'recent': {'$each': [{'created_at_us': Int64(i), 'id': i % 7}],
                                      '$sort': SON([('created_at_us', -1), ('id', -1)]),
                                      '$slice': 5}}},
                upsert=True))
        cpu0 = SERVER.cpu_seconds()
        start = time.time()
        res = coll.bulk_write(reqs, ordered=True)
        took = time.time() - start
        cpu = SERVER.cpu_seconds() - cpu0 if cpu0 is not None else None
        self.assertEqual((res.upserted_count, res.modified_count), (accounts, n - accounts))
        RESULTS['pymongo'] = (n, took, cpu)
        print('\n    %s' % describe_rate('pymongo', n, took, cpu), flush=True)
        doc = coll.find_one({'_id': 7})
        self.assertD128(doc['balance'], '2010.0000')
        self.assertEqual(doc['lsn'], 19007)
        self.assertEqual([r['created_at_us'] for r in doc['recent']],
                         [19007, 18007, 17007, 16007, 15007])


class TestCDriver(unittest.TestCase):
    """libmongoc 1.23 (walfold's client): compile standin_c_probe.c and run it."""

    def test_c_probe(self):
        gcc = shutil.which('gcc') or shutil.which('cc')
        pkg = shutil.which('pkg-config')
        if not gcc or not pkg:
            self.skipTest('gcc or pkg-config not installed')
        flags = subprocess.run([pkg, '--cflags', '--libs', 'libmongoc-1.0'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if flags.returncode != 0:
            self.skipTest('libmongoc-dev not installed (pkg-config libmongoc-1.0 failed)')
        tmp = tempfile.mkdtemp(prefix='walfold-c-probe-')
        self.addCleanup(shutil.rmtree, tmp, True)
        exe = os.path.join(tmp, 'standin_c_probe')
        cc = subprocess.run([gcc, '-O1', '-Wall', '-Werror', '-o', exe, C_PROBE] +
                            flags.stdout.decode().split(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(cc.returncode, 0, 'compiling the C probe failed:\n' +
                         cc.stdout.decode())
        cpu0 = SERVER.cpu_seconds()
        run = subprocess.run([exe, SERVER.uri + '/?appname=c-probe', '20000', '1000'],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        cpu = SERVER.cpu_seconds() - cpu0 if cpu0 is not None else None
        out = run.stdout.decode()
        failed = [line for line in out.splitlines() if line.startswith('FAIL')]
        self.assertEqual(failed, [], out)
        self.assertEqual(run.returncode, 0, out)
        self.assertIn('PROBE OK', out)
        m = re.search(r'THROUGHPUT (\d+) statements ([\d.]+) seconds (\d+) statements/s', out)
        self.assertIsNotNone(m, out)
        n, took = int(m.group(1)), float(m.group(2))
        # The server CPU figure covers the whole probe (its bulk write is most of it).
        RESULTS['libmongoc'] = (n, took, cpu)
        print('\n    %s; %d probe checks passed' % (
            describe_rate('libmongoc', n, took, None), out.count('PASS ')), flush=True)


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


def describe_rate(client, n, took, cpu):
    text = '%s bulk upserts (6 update operators each): %d statements in %.2fs wall = %.0f ' \
           'statements/s' % (client, n, took, n / took if took else 0.0)
    if cpu:
        text += ' (stand-in used %.2f CPU s = %.0f statements per CPU second)' % (cpu, n / cpu)
    return text


def main():
    argv = [sys.argv[0]] + sys.argv[1:]
    verbosity = 2 if ('-v' in argv or '--verbose' in argv) else 1
    program = unittest.main(argv=argv, exit=False, verbosity=verbosity)
    result = program.result
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    for name in ('pymongo', 'libmongoc'):
        if name in RESULTS:
            n, took, cpu = RESULTS[name]
            print('throughput: ' + describe_rate(name, n, took, cpu if name == 'pymongo' else None))
    print('selftest: %d passed, %d failed, %d skipped' % (passed, failed, skipped))
    return 0 if result.wasSuccessful() else 1


if __name__ == '__main__':
    sys.exit(main())
