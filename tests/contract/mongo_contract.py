#!/usr/bin/python3
"""MongoDB contract suite: the same requests against the stand-in and against a real MongoDB.

    /usr/bin/python3 tests/contract/mongo_contract.py [-v]             # the stand-in
    WALFOLD_TEST_MONGODB_URI=mongodb://127.0.0.1:27017 \\
        /usr/bin/python3 tests/contract/mongo_contract.py [-v]         # a real mongod

The expectations come from MongoDB's documented behaviour (the manual page is cited at each
case), not from walfold's document shapes: neutral collections (`c_<test>`) and fields, one
database per run (`wf_contract_<pid>`, dropped at the end).  Every request here is one walfold
or its tests make (projections/, checkpoint/, reconcile/, tools/report.cpp, tests/*/ (the *_it.cpp files),
bench/), so where the stand-in and MongoDB disagree, walfold's tests would be testing the
stand-in.  Exit 0 = every case passed against the target named on the first line.
"""

import os
import sys
import time
import unittest

try:
    from bson.decimal128 import Decimal128
    from bson.int64 import Int64
    from bson.son import SON
    from pymongo import DeleteOne, InsertOne, UpdateOne
    from pymongo.errors import BulkWriteError, DocumentTooLarge, OperationFailure, WriteError
    from pymongo.write_concern import WriteConcern
except ImportError as exc:  # pragma: no cover
    sys.stderr.write('mongo_contract: %s; run with /usr/bin/python3 and install '
                     'python3-pymongo\n' % exc)
    sys.exit(2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from target import Target  # noqa: E402  pylint: disable=wrong-import-position

TARGET = None
MANUAL = 'https://www.mongodb.com/docs/manual/'


def setUpModule():
    global TARGET  # pylint: disable=global-statement
    TARGET = Target()
    print('contract target: %s' % TARGET.describe(), flush=True)


def tearDownModule():
    client = TARGET.client()
    try:
        client.drop_database(Case.db_name)
    finally:
        client.close()
    rc, text = TARGET.close()
    if rc != 0:
        raise AssertionError('stand-in exited with %r after SIGTERM; stderr:\n%s'
                             % (rc, text[-4000:]))


class Case(unittest.TestCase):
    db_name = 'wf_contract_%d_%d' % (os.getpid(), int(time.time()))

    @classmethod
    def setUpClass(cls):
        cls.client = TARGET.client()
        cls.db = cls.client[cls.db_name]

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def coll(self, suffix=''):
        """A collection of this test's own (a new name per test: no drop needed)."""
        return self.db['c_%s%s' % (self._testMethodName[5:], suffix)]

    def ids(self, cursor):
        return [d['_id'] for d in cursor]

    @staticmethod
    def ordered(values):
        """Numbers (of any BSON type) by value, then strings."""
        return sorted(values, key=lambda v: (1, 0.0, v) if isinstance(v, str)
                      else (0, float(str(v)), ''))

    def assertD128(self, value, text):
        self.assertIs(type(value), Decimal128, 'expected Decimal128, got %r' % (value,))
        self.assertEqual(str(value), text)

    def write_error(self, fn):
        """The single write error of a write `fn` that must fail: (code, errmsg)."""
        with self.assertRaises(WriteError) as cm:
            fn()
        return cm.exception.code, str(cm.exception)


class Query(Case):
    def test_embedded_document_equality_is_field_order_sensitive(self):
        # MANUAL tutorial/query-embedded-documents: "Equality matches on the whole embedded
        # document require an exact match of the specified <value> document, including the
        # field order."
        c = self.coll()
        c.insert_one({'_id': 1, 'e': SON([('a', 1), ('b', 2)])})
        self.assertEqual(self.ids(c.find({'e': SON([('a', 1), ('b', 2)])})), [1])
        self.assertEqual(self.ids(c.find({'e': SON([('b', 2), ('a', 1)])})), [])
        self.assertEqual(self.ids(c.find({'e': SON([('a', 1)])})), [])  # not a subset match
        self.assertEqual(self.ids(c.find({'e.b': 2})), [1])  # dot notation: one field
        # The same for a value inside the filter of an update (and it is not an upsert).
        r = c.update_one({'e': SON([('b', 2), ('a', 1)])}, {'$set': {'x': 1}})
        self.assertEqual((r.matched_count, r.modified_count), (0, 0))

    def test_numbers_compare_across_types(self):
        # MANUAL reference/bson-type-comparison-order: "MongoDB treats some types as
        # equivalent for comparison purposes. For instance, numeric types undergo conversion
        # before comparison." Type bracketing: a comparison only matches values of the
        # operand's type class (reference/operator/query/gt: the string "7" is not > 4).
        c = self.coll()
        c.insert_many([{'_id': 1, 'v': 7}, {'_id': 2, 'v': Int64(7)}, {'_id': 3, 'v': 7.0},
                       {'_id': 4, 'v': Decimal128('7.00')}, {'_id': 5, 'v': '7'},
                       {'_id': 6, 'v': 6.5}, {'_id': 7}])
        self.assertEqual(sorted(self.ids(c.find({'v': 7}))), [1, 2, 3, 4])
        self.assertEqual(sorted(self.ids(c.find({'v': Decimal128('7')}))), [1, 2, 3, 4])
        self.assertEqual(sorted(self.ids(c.find({'v': {'$gt': Int64(6)}}))), [1, 2, 3, 4, 6])
        self.assertEqual(sorted(self.ids(c.find({'v': {'$lt': Decimal128('7')}}))), [6])
        self.assertEqual(sorted(self.ids(c.find({'v': {'$gte': 7.0, '$lte': 7}}))),
                         [1, 2, 3, 4])
        self.assertEqual(sorted(self.ids(c.find({'v': {'$gt': 'a'}}))), [])
        self.assertEqual(sorted(self.ids(c.find({'v': {'$ne': 7}}))), [5, 6, 7])

    def test_in_and_and(self):
        # MANUAL reference/operator/query/in, reference/operator/query/and.
        c = self.coll()
        c.insert_many([{'_id': Int64(i), 'g': i % 3, 'w': i} for i in range(1, 10)])
        self.assertEqual(sorted(self.ids(c.find({'_id': {'$in': [Int64(2), 4, 4.0, 99]}}))),
                         [Int64(2), Int64(4)])
        self.assertEqual(self.ids(c.find({'_id': {'$in': []}})), [])
        self.assertEqual(sorted(self.ids(c.find({'$and': [{'w': {'$gt': 2}},
                                                          {'w': {'$lt': 7}},
                                                          {'g': {'$in': [0, 1]}}]}))),
                         [3, 4, 6])
        self.assertEqual(sorted(self.ids(c.find({'g': {'$nin': [0, 1]}}))), [2, 5, 8])

    def test_id_ranges_bracket_by_type_and_follow_writes(self):
        # MANUAL reference/operator/query/gt (and gte, lt, lte): comparison on _id as on any
        # field, with type bracketing (reference/bson-type-comparison-order: numbers are one
        # class, a string is not greater than a number). What bench/latency_poll.py asks:
        # {_id: {$gt: <newest seen>}}; the stand-in answers it from a sorted _id index.
        c = self.coll()
        c.insert_many([{'_id': Int64(i)} for i in (5, 1, 3, 9, 7)] +
                      [{'_id': 4.5}, {'_id': Decimal128('8.5')}, {'_id': 'z'}, {'_id': '9'},
                       {'_id': 10}])
        self.assertEqual(self.ordered(self.ids(c.find({'_id': {'$gt': Int64(5)}}))),
                         [7, Decimal128('8.5'), 9, 10])
        self.assertEqual(self.ordered(self.ids(c.find({'_id': {'$gte': 5}}))),
                         [5, 7, Decimal128('8.5'), 9, 10])
        self.assertEqual(self.ordered(self.ids(c.find({'_id': {'$lt': 5}}))), [1, 3, 4.5])
        self.assertEqual(self.ordered(self.ids(c.find({'_id': {'$gt': 3, '$lte': 9}}))),
                         [4.5, 5, 7, Decimal128('8.5'), 9])
        self.assertEqual(self.ordered(self.ids(c.find({'_id': {'$gt': 3, '$gte': 7, '$lt': 10}}))),
                         [7, Decimal128('8.5'), 9])
        self.assertEqual(self.ids(c.find({'_id': {'$gt': 10}})), [])
        self.assertEqual(self.ids(c.find({'_id': {'$gt': 9, '$lt': 9}})), [])
        self.assertEqual(self.ids(c.find({'_id': {'$gt': 'y'}})), ['z'])
        # With a sort and a limit, and after deletes and inserts.
        self.assertEqual(self.ids(c.find({'_id': {'$gt': 1}}).sort('_id', -1).limit(2)),
                         [10, 9])
        c.delete_many({'_id': {'$in': [7, 10]}})
        c.insert_many([{'_id': Int64(6)}, {'_id': 11}])
        self.assertEqual(self.ordered(self.ids(c.find({'_id': {'$gt': 5}}))),
                         [6, Decimal128('8.5'), 9, 11])
        # An upsert by _id creates a document the next range query sees.
        c.update_one({'_id': Int64(12)}, {'$set': {'x': 1}}, upsert=True)
        self.assertEqual(self.ordered(self.ids(c.find({'_id': {'$gte': 11}}))), [11, 12])
        # Other conditions still apply to the documents in the range.
        self.assertEqual(self.ids(c.find({'_id': {'$gt': 5}, 'x': 1})), [12])

    def test_not_matches_documents_without_the_field(self):
        # MANUAL reference/operator/query/not: "$not ... selects the documents that do not
        # match the operator-expression. This includes documents that do not contain the
        # field." (walfold's guards: {lsn: {$not: {$gte: N}}}.)
        c = self.coll()
        c.insert_many([{'_id': 1, 'lsn': Int64(5)}, {'_id': 2, 'lsn': Int64(10)},
                       {'_id': 3}, {'_id': 4, 'lsn': None}, {'_id': 5, 'lsn': 'text'}])
        self.assertEqual(sorted(self.ids(c.find({'lsn': {'$not': {'$gte': Int64(10)}}}))),
                         [1, 3, 4, 5])
        self.assertEqual(sorted(self.ids(c.find({'lsn': {'$gte': Int64(10)}}))), [2])
        self.assertEqual(sorted(self.ids(c.find({'a.b': {'$not': {'$gt': 1}}}))),
                         [1, 2, 3, 4, 5])

    def test_null_and_exists(self):
        # MANUAL tutorial/query-for-null-fields: {f: null} matches null and missing fields;
        # {f: {$exists: false}} only missing ones.
        c = self.coll()
        c.insert_many([{'_id': 1, 'f': None}, {'_id': 2}, {'_id': 3, 'f': 0}])
        self.assertEqual(sorted(self.ids(c.find({'f': None}))), [1, 2])
        self.assertEqual(sorted(self.ids(c.find({'f': {'$exists': False}}))), [2])
        self.assertEqual(sorted(self.ids(c.find({'f': {'$exists': True}}))), [1, 3])

    def test_sub_document_with_digit_keys(self):
        # Dot notation into an embedded document whose field names are digits: the path
        # 'm.17' names the field "17" (MANUAL core/document/#dot-notation).
        c = self.coll()
        c.insert_one({'_id': 1, 'm': {'17': Int64(3), '2': Int64(9)}})
        self.assertEqual(self.ids(c.find({'m.17': {'$lt': Int64(5)}})), [1])
        self.assertEqual(self.ids(c.find({'m.2': {'$lt': Int64(5)}})), [])
        c.update_one({'_id': 1}, {'$set': {'m.17': Int64(4), 'm.100': Int64(1)}})
        self.assertEqual(c.find_one({'_id': 1})['m'],
                         {'17': Int64(4), '2': Int64(9), '100': Int64(1)})

    def test_unknown_query_operator_is_bad_value(self):
        # An operator MongoDB does not have: error 2 BadValue "unknown operator".
        c = self.coll()
        c.insert_one({'_id': 1, 'v': 1})
        with self.assertRaises(OperationFailure) as cm:
            list(c.find({'v': {'$frobnicate': 1}}))
        self.assertEqual(cm.exception.code, 2)
        self.assertIn('unknown operator', str(cm.exception))
        with self.assertRaises(OperationFailure) as cm:
            list(c.find({'$frobnicate': [{'v': 1}]}))
        self.assertEqual(cm.exception.code, 2)


class Find(Case):
    def fill(self, c):
        # Two groups; in group 1 two documents share ts (ties broken by _id, as walfold's
        # sort {ts: -1, _id: -1} does); one document has no ts.
        c.insert_many([
            {'_id': Int64(1), 'g': Int64(1), 'ts': Int64(100), 'v': 'a', 'x': 1},
            {'_id': Int64(2), 'g': Int64(1), 'ts': Int64(300), 'v': 'b', 'x': 2},
            {'_id': Int64(3), 'g': Int64(2), 'ts': Int64(200), 'v': 'c', 'x': 3},
            {'_id': Int64(4), 'g': Int64(1), 'ts': Int64(300), 'v': 'd', 'x': 4},
            {'_id': Int64(5), 'g': Int64(1), 'v': 'e', 'x': 5},
        ])

    def test_sort_compound_descending_with_ties_and_missing(self):
        # MANUAL reference/method/cursor.sort: compound sort, a missing field sorts as null
        # (before numbers ascending, after them descending).
        c = self.coll()
        self.fill(c)
        got = self.ids(c.find({'g': Int64(1)}, sort=[('ts', -1), ('_id', -1)]))
        self.assertEqual(got, [4, 2, 1, 5])
        got = self.ids(c.find({'g': Int64(1)}, sort=[('ts', 1), ('_id', 1)]))
        self.assertEqual(got, [5, 1, 2, 4])
        self.assertEqual(self.ids(c.find({}, sort=[('_id', -1)], limit=2)), [5, 4])
        self.assertEqual(self.ids(c.find({}, sort=[('_id', 1)], skip=3)), [4, 5])

    def test_projection_inclusion_and_exclusion(self):
        # MANUAL tutorial/project-fields-from-query-results: an inclusion projection returns
        # the named fields and _id (unless _id: 0); an exclusion projection all others.
        c = self.coll()
        self.fill(c)
        doc = c.find_one({'_id': Int64(2)}, projection={'v': 1, 'ts': 1})
        self.assertEqual(list(doc.items()), [('_id', Int64(2)), ('ts', Int64(300)),
                                             ('v', 'b')])  # document order, not the spec's
        doc = c.find_one({'_id': Int64(2)}, projection={'_id': 0, 'x': 1})
        self.assertEqual(doc, {'x': 2})
        doc = c.find_one({'_id': Int64(2)}, projection={'v': 0, 'x': 0})
        self.assertEqual(list(doc), ['_id', 'g', 'ts'])
        doc = c.find_one({'_id': Int64(2)}, projection={'_id': 1})
        self.assertEqual(doc, {'_id': Int64(2)})
        doc = c.find_one({'_id': Int64(5)}, projection={'ts': 1})  # a missing field: absent
        self.assertEqual(doc, {'_id': Int64(5)})
        with self.assertRaises(OperationFailure) as cm:
            c.find_one({}, projection={'v': 1, 'x': 0})
        self.assertEqual(cm.exception.code, 31254)  # "Cannot do exclusion ... in inclusion"

    def test_get_more_and_kill_cursors(self):
        # MANUAL reference/command/getMore, reference/command/killCursors: a find returns a
        # first batch and a cursor id; getMore continues it; a killed cursor is gone (43
        # CursorNotFound, reference/error-codes).
        c = self.coll()
        c.insert_many([{'_id': i, 'pad': 'p' * 100} for i in range(250)])
        self.assertEqual(self.ids(c.find({}, sort=[('_id', 1)], batch_size=7)), list(range(250)))
        r = self.db.command(SON([('find', c.name), ('filter', {}), ('sort', {'_id': 1}),
                                 ('batchSize', 10)]))
        cur = r['cursor']
        self.assertEqual(len(cur['firstBatch']), 10)
        self.assertNotEqual(cur['id'], 0)
        self.assertEqual(cur['ns'], '%s.%s' % (self.db_name, c.name))
        more = self.db.command(SON([('getMore', cur['id']), ('collection', c.name),
                                    ('batchSize', 5)]))
        self.assertEqual([d['_id'] for d in more['cursor']['nextBatch']], [10, 11, 12, 13, 14])
        self.assertEqual(more['cursor']['id'], cur['id'])
        killed = self.db.command(SON([('killCursors', c.name), ('cursors', [cur['id']])]))
        self.assertEqual(killed['cursorsKilled'], [cur['id']])
        with self.assertRaises(OperationFailure) as cm:
            self.db.command(SON([('getMore', cur['id']), ('collection', c.name)]))
        self.assertEqual(cm.exception.code, 43)
        # A cursor that returns everything in its first batch is closed (id 0).
        r = self.db.command(SON([('find', c.name), ('filter', {'_id': {'$lt': 3}})]))
        self.assertEqual(r['cursor']['id'], 0)
        self.assertEqual(len(r['cursor']['firstBatch']), 3)

    def test_find_on_a_missing_collection_is_empty(self):
        self.assertEqual(list(self.coll().find({'_id': 1})), [])


class Update(Case):
    def test_upsert_seeds_the_new_document_from_equality_fields(self):
        # MANUAL reference/method/db.collection.updateOne/#upsert: the new document gets the
        # equality conditions of the filter (not the others: $gt, $not...) plus the update.
        c = self.coll()
        r = c.update_one({'_id': Int64(7), 'k': 'x', 'n': {'$gt': 3},
                          'lsn': {'$not': {'$gte': Int64(5)}}},
                         {'$set': {'s': 1}}, upsert=True)
        self.assertEqual((r.matched_count, r.modified_count, r.upserted_id), (0, 0, Int64(7)))
        self.assertEqual(c.find_one({'_id': Int64(7)}), {'_id': Int64(7), 'k': 'x', 's': 1})
        # {$and: [...]} equality fields count too; _id is generated when not given (first).
        r = c.update_one({'$and': [{'a': 1}, {'b': {'$eq': 2}}]}, {'$set': {'z': 3}},
                         upsert=True)
        doc = c.find_one({'_id': r.upserted_id})
        self.assertEqual(list(doc), ['_id', 'a', 'b', 'z'])
        self.assertEqual((doc['a'], doc['b'], doc['z']), (1, 2, 3))

    def test_set_on_insert_applies_only_when_inserting(self):
        # MANUAL reference/operator/update/setOnInsert: "If the update operation does not
        # result in an insert, $setOnInsert does nothing."
        c = self.coll()
        r = c.update_one({'_id': 1}, {'$setOnInsert': {'a': 1, 'n': Int64(0)},
                                      '$set': {'b': 1}}, upsert=True)
        self.assertEqual(r.upserted_id, 1)
        r = c.update_one({'_id': 1}, {'$setOnInsert': {'a': 2}, '$set': {'b': 2}}, upsert=True)
        self.assertEqual((r.matched_count, r.modified_count, r.upserted_id), (1, 1, None))
        self.assertEqual(c.find_one({'_id': 1}), {'_id': 1, 'a': 1, 'b': 2, 'n': Int64(0)})
        # Only $setOnInsert on an existing document: matched, not modified.
        r = c.update_one({'_id': 1}, {'$setOnInsert': {'a': 3}}, upsert=True)
        self.assertEqual((r.matched_count, r.modified_count, r.upserted_id), (1, 0, None))

    def test_upsert_whose_filter_misses_an_existing_id_is_a_duplicate_key(self):
        # The filter does not match, so the upsert inserts, with the filter's _id, which exists:
        # E11000 (MANUAL reference/method/db.collection.updateOne/#upsert-with-duplicate-values,
        # code 11000 DuplicateKey, reference/error-codes). walfold's replayed guarded upserts.
        c = self.coll()
        c.insert_one({'_id': Int64(1), 'lsn': Int64(9)})
        code, msg = self.write_error(lambda: c.update_one(
            {'_id': Int64(1), 'lsn': {'$not': {'$gte': Int64(9)}}}, {'$set': {'v': 1}},
            upsert=True))
        self.assertEqual(code, 11000)
        self.assertIn('duplicate key', msg)
        self.assertEqual(c.find_one({'_id': Int64(1)}), {'_id': Int64(1), 'lsn': Int64(9)})

    def test_inc_creates_missing_fields_and_keeps_integer_types(self):
        # MANUAL reference/operator/update/inc: "If the field does not exist, $inc creates the
        # field and sets the field to the specified value." Integer types: int32 + int32 stays
        # int32 (int64 on overflow), anything + int64 is int64 (core/shell-types / BSON types).
        c = self.coll()
        c.insert_one({'_id': 1, 'i': 5, 'l': Int64(5), 'sub': {}})
        c.update_one({'_id': 1}, {'$inc': {'i': 1, 'l': 1, 'new': 2, 'sub.x': Int64(3),
                                           'deep.er': 1}})
        doc = c.find_one({'_id': 1})
        self.assertIs(type(doc['i']), int)
        self.assertEqual(doc['i'], 6)
        self.assertIs(type(doc['l']), Int64)
        self.assertEqual(doc['l'], 6)
        self.assertIs(type(doc['new']), int)
        self.assertEqual(doc['sub'], {'x': Int64(3)})
        self.assertEqual(doc['deep'], {'er': 1})
        c.update_one({'_id': 1}, {'$inc': {'i': Int64(1)}})
        self.assertIs(type(c.find_one({'_id': 1})['i']), Int64)
        c.update_one({'_id': 1}, {'$set': {'big': 2147483647}})
        c.update_one({'_id': 1}, {'$inc': {'big': 1}})  # int32 overflow: int64
        big = c.find_one({'_id': 1})['big']
        self.assertIs(type(big), Int64)
        self.assertEqual(big, 2147483648)
        # $inc in an upsert creates the field in the new document.
        c.update_one({'_id': 2}, {'$inc': {'n': Int64(4)}}, upsert=True)
        self.assertEqual(c.find_one({'_id': 2}), {'_id': 2, 'n': Int64(4)})

    def test_inc_on_decimal128_is_exact(self):
        # Decimal128 arithmetic keeps every digit (MANUAL reference/bson-types/#decimal128-bson
        # -data-type: 34 decimal digits); Decimal128 + Decimal128 stays Decimal128, int + Decimal128
        # becomes Decimal128 (the wider type, reference/operator/update/inc).
        c = self.coll()
        c.insert_one({'_id': 1, 'd': Decimal128('0.1'), 'i': 5, 'z': Decimal128('0.0000')})
        c.update_one({'_id': 1}, {'$inc': {'d': Decimal128('0.2'), 'i': Decimal128('0.5'),
                                           'z': Decimal128('100.5000'),
                                           'm': Decimal128('100.5000')}})
        doc = c.find_one({'_id': 1})
        self.assertD128(doc['d'], '0.3')  # not 0.30000000000000004
        self.assertD128(doc['i'], '5.5')
        self.assertD128(doc['z'], '100.5000')  # trailing zeros (the exponent) are kept
        self.assertD128(doc['m'], '100.5000')  # created by $inc: the increment as given
        c.update_one({'_id': 1}, {'$inc': {'d': 2}})  # Decimal128 + int32 stays Decimal128
        self.assertD128(c.find_one({'_id': 1})['d'], '2.3')
        c.update_one({'_id': 1}, {'$inc': {'d': Decimal128('-2.3')}})
        self.assertD128(c.find_one({'_id': 1})['d'], '0.0')
        big = '9999999999999999999999999999.999999'  # 34 digits: exact
        c.update_one({'_id': 1}, {'$set': {'b': Decimal128(big)}})
        c.update_one({'_id': 1}, {'$inc': {'b': Decimal128('-0.000001')}})
        self.assertD128(c.find_one({'_id': 1})['b'], '9999999999999999999999999999.999998')

    def test_inc_on_a_non_number_is_a_type_mismatch(self):
        # MANUAL reference/operator/update/inc: "Use of the $inc operator on a field with a
        # null value will generate an error"; a non-numeric field or argument: 14 TypeMismatch.
        c = self.coll()
        c.insert_one({'_id': 1, 's': 'text', 'n': None})
        self.assertEqual(self.write_error(
            lambda: c.update_one({'_id': 1}, {'$inc': {'s': 1}}))[0], 14)
        self.assertEqual(self.write_error(
            lambda: c.update_one({'_id': 1}, {'$inc': {'n': 1}}))[0], 14)
        self.assertEqual(self.write_error(
            lambda: c.update_one({'_id': 1}, {'$inc': {'x': 'one'}}))[0], 14)
        self.assertEqual(c.find_one({'_id': 1}), {'_id': 1, 's': 'text', 'n': None})

    def test_unknown_update_operator_is_failed_to_parse(self):
        # An update operator MongoDB does not have: 9 FailedToParse "Unknown modifier".
        c = self.coll()
        c.insert_one({'_id': 1})
        code, msg = self.write_error(lambda: c.update_one({'_id': 1}, {'$frobnicate': {'a': 1}}))
        self.assertEqual(code, 9)
        self.assertIn('Unknown modifier', msg)

    def test_conflicting_paths_and_immutable_id(self):
        # MANUAL reference/error-codes: 40 ConflictingUpdateOperators (two operators on one
        # path or its prefix), 66 ImmutableField (_id cannot change).
        c = self.coll()
        c.insert_one({'_id': 1, 'a': {'b': 1}})
        self.assertEqual(self.write_error(lambda: c.update_one(
            {'_id': 1}, {'$set': {'a.b': 2}, '$unset': {'a': ''}}))[0], 40)
        self.assertEqual(self.write_error(lambda: c.update_one(
            {'_id': 1}, {'$set': {'x': 2}, '$inc': {'x': 1}}))[0], 40)
        self.assertEqual(self.write_error(lambda: c.update_one(
            {'_id': 1}, {'$set': {'_id': 2}}))[0], 66)
        self.assertEqual(c.find_one({'_id': 1}), {'_id': 1, 'a': {'b': 1}})

    def test_n_matched_versus_n_modified(self):
        # MANUAL reference/command/update/#output: n counts matched documents, nModified only
        # those the update changed (setting a field to its current value is no change).
        c = self.coll()
        c.insert_many([{'_id': 1, 'v': 1}, {'_id': 2, 'v': 2}, {'_id': 3, 'v': 1}])
        r = c.update_one({'_id': 1}, {'$set': {'v': 1}})
        self.assertEqual((r.matched_count, r.modified_count), (1, 0))
        r = c.update_many({}, {'$set': {'v': 1}})
        self.assertEqual((r.matched_count, r.modified_count), (3, 1))
        r = c.update_one({'_id': 1}, {'$max': {'v': 0}})
        self.assertEqual((r.matched_count, r.modified_count), (1, 0))
        r = c.update_one({'_id': 1}, {'$unset': {'missing': ''}})
        self.assertEqual((r.matched_count, r.modified_count), (1, 0))
        # Same value, other type: a change (the stored BSON differs).
        r = c.update_one({'_id': 1}, {'$set': {'v': Int64(1)}})
        self.assertEqual((r.matched_count, r.modified_count), (1, 1))
        r = c.update_one({'_id': 99}, {'$set': {'v': 1}})
        self.assertEqual((r.matched_count, r.modified_count, r.upserted_id), (0, 0, None))
        raw = self.db.command(SON([('update', c.name), ('updates', [
            {'q': {'_id': 1}, 'u': {'$set': {'v': 5}}},
            {'q': {'_id': 2}, 'u': {'$set': {'v': 1}}},
            {'q': {'_id': 4}, 'u': {'$set': {'v': 1}}, 'upsert': True}])]))
        self.assertEqual((raw['n'], raw['nModified']), (3, 1))
        self.assertEqual(raw['upserted'], [{'index': 2, '_id': 4}])

    def test_new_fields_are_added_in_lexicographic_order(self):
        # MANUAL reference/operator/update/set/#behavior (5.0+): "update operators process
        # document fields with string-based names in lexicographic order. Fields with numeric
        # names are processed in numeric order."
        c = self.coll()
        c.insert_one({'_id': 1, 'm': {}})
        c.update_one({'_id': 1}, {'$set': {'z': 1, 'b': 1, 'm.10': 1, 'm.9': 1, 'a': 1}})
        doc = c.find_one({'_id': 1})
        self.assertEqual(list(doc), ['_id', 'm', 'a', 'b', 'z'])
        self.assertEqual(list(doc['m']), ['9', '10'])

    def test_max_unset_and_replacement(self):
        # MANUAL reference/operator/update/max, unset; a replacement document keeps _id and
        # replaces every other field (reference/method/db.collection.replaceOne).
        c = self.coll()
        c.insert_one({'_id': 1, 'v': Int64(5), 'w': 1, 'x': 1})
        c.update_one({'_id': 1}, {'$max': {'v': Int64(3), 'new': Int64(2)}})
        self.assertEqual(c.find_one({'_id': 1})['v'], Int64(5))
        self.assertEqual(c.find_one({'_id': 1})['new'], Int64(2))
        c.update_one({'_id': 1}, {'$max': {'v': Decimal128('5.5')}})
        self.assertD128(c.find_one({'_id': 1})['v'], '5.5')
        c.update_one({'_id': 1}, {'$unset': {'w': '', 'nothing': ''}})
        self.assertNotIn('w', c.find_one({'_id': 1}))
        r = c.replace_one({'_id': 1}, {'q': 2, 'p': 1})
        self.assertEqual((r.matched_count, r.modified_count), (1, 1))
        self.assertEqual(list(c.find_one({'_id': 1}).items()), [('_id', 1), ('q', 2), ('p', 1)])

    def test_push_each_sort_slice_add_to_set_pull(self):
        # MANUAL reference/operator/update/push (with $each, $sort on embedded fields, $slice
        # positive: keep the first N after sorting; negative: keep the last N),
        # reference/operator/update/addToSet, reference/operator/update/pull.
        c = self.coll()
        c.insert_one({'_id': 1, 'r': [{'t': Int64(5), 'i': 1}], 'h': [1, 2, 3], 's': [Int64(1)]})
        c.update_one({'_id': 1}, {'$push': {'r': {
            '$each': [{'t': Int64(9), 'i': 2}, {'t': Int64(5), 'i': 3}, {'t': Int64(1), 'i': 4}],
            '$sort': SON([('t', -1), ('i', -1)]), '$slice': 3}}})
        self.assertEqual([e['i'] for e in c.find_one({'_id': 1})['r']], [2, 3, 1])
        c.update_one({'_id': 1}, {'$push': {'h': {'$each': [4, 5], '$slice': -3}}})
        self.assertEqual(c.find_one({'_id': 1})['h'], [3, 4, 5])
        c.update_one({'_id': 1}, {'$push': {'new': {'$each': [2, 1], '$sort': 1}}})
        self.assertEqual(c.find_one({'_id': 1})['new'], [1, 2])
        r = c.update_one({'_id': 1}, {'$addToSet': {'s': 1}})  # 1 == Int64(1): already there
        self.assertEqual(r.modified_count, 0)
        c.update_one({'_id': 1}, {'$addToSet': {'s': Int64(2)}})
        self.assertEqual(c.find_one({'_id': 1})['s'], [Int64(1), Int64(2)])
        c.update_one({'_id': 1}, {'$push': {'s': 1.0}})
        c.update_one({'_id': 1}, {'$pull': {'s': 1}})  # every element equal to 1 goes
        self.assertEqual(c.find_one({'_id': 1})['s'], [Int64(2)])
        r = c.update_one({'_id': 1}, {'$pull': {'s': 7, 'missing': 1}})
        self.assertEqual(r.modified_count, 0)

    def test_document_size_limit_is_16_mib(self):
        # MANUAL reference/limits/#mongodb-limit-BSON-Document-Size: "The maximum BSON
        # document size is 16 mebibytes." An update whose result is larger fails with 17419
        # "Resulting document after update is larger than 16777216" and leaves the document
        # as it was. An insert just over the limit (drivers send up to 16 MiB + 16 KiB, the
        # wire allowance) fails with 2 BadValue "object to insert too large" (mongod's
        # fixDocumentForInsert); far over it, pymongo refuses to send it (DocumentTooLarge).
        c = self.coll()
        half = 8 * 1024 * 1024
        c.insert_one({'_id': 1, 'a': 'x' * half})
        c.update_one({'_id': 1}, {'$set': {'b': 'y' * (half - 1024)}})  # just below: fine
        code, msg = self.write_error(
            lambda: c.update_one({'_id': 1}, {'$set': {'b': 'y' * half}}))
        self.assertEqual(code, 17419)
        self.assertIn('16777216', msg)
        self.assertEqual(len(c.find_one({'_id': 1})['b']), half - 1024)
        code, msg = self.write_error(
            lambda: c.insert_one({'_id': 2, 'a': 'x' * (16 * 1024 * 1024)}))
        self.assertEqual(code, 2)
        self.assertIn('too large', msg)
        with self.assertRaises(DocumentTooLarge):
            c.insert_one({'_id': 3, 'a': 'x' * (17 * 1024 * 1024)})
        self.assertEqual(self.ids(c.find({}, projection={'_id': 1})), [1])


class Bulk(Case):
    def test_ordered_insert_stops_at_the_first_error(self):
        # MANUAL reference/method/db.collection.insertMany/#error-handling: ordered: "if an
        # error occurs ... the remaining documents are not inserted"; writeErrors carry the
        # statement's index and code 11000 for a duplicate _id.
        c = self.coll()
        with self.assertRaises(BulkWriteError) as cm:
            c.insert_many([{'_id': 1}, {'_id': 2}, {'_id': 1}, {'_id': 3}], ordered=True)
        d = cm.exception.details
        self.assertEqual(d['nInserted'], 2)
        self.assertEqual([(e['index'], e['code']) for e in d['writeErrors']], [(2, 11000)])
        self.assertEqual(sorted(self.ids(c.find())), [1, 2])

    def test_unordered_insert_continues_after_errors(self):
        c = self.coll()
        with self.assertRaises(BulkWriteError) as cm:
            c.insert_many([{'_id': 1}, {'_id': 1}, {'_id': 2}, {'_id': 2}, {'_id': 3}],
                          ordered=False)
        d = cm.exception.details
        self.assertEqual(d['nInserted'], 3)
        self.assertEqual([(e['index'], e['code']) for e in d['writeErrors']],
                         [(1, 11000), (3, 11000)])
        self.assertEqual(sorted(self.ids(c.find())), [1, 2, 3])

    def test_ordered_and_unordered_update_bulks(self):
        # reference/method/db.collection.bulkWrite/#ordered-vs-unordered-operations: the same
        # for updates: an ordered bulk stops at the failing statement, unordered runs the rest.
        for ordered in (True, False):
            c = self.coll('_ordered' if ordered else '_unordered')
            c.insert_one({'_id': 2, 'v': 'text'})
            ops = [UpdateOne({'_id': 1}, {'$inc': {'v': 1}}, upsert=True),
                   UpdateOne({'_id': 2}, {'$inc': {'v': 1}}, upsert=True),  # 14 TypeMismatch
                   UpdateOne({'_id': 3}, {'$inc': {'v': 1}}, upsert=True),
                   DeleteOne({'_id': 1}), InsertOne({'_id': 4})]
            with self.assertRaises(BulkWriteError) as cm:
                c.bulk_write(ops, ordered=ordered)
            d = cm.exception.details
            self.assertEqual([(e['index'], e['code']) for e in d['writeErrors']], [(1, 14)])
            if ordered:
                self.assertEqual((d['nUpserted'], d['nRemoved'], d['nInserted']), (1, 0, 0))
                self.assertEqual(sorted(self.ids(c.find())), [1, 2])
            else:
                self.assertEqual((d['nUpserted'], d['nRemoved'], d['nInserted']), (2, 1, 1))
                self.assertEqual([u['index'] for u in d['upserted']], [0, 2])
                self.assertEqual(sorted(self.ids(c.find())), [2, 3, 4])

    def test_write_concerns_walfold_sends(self):
        # walfold's mongodb.write_concern: "majority" (default) or a number; both are
        # acknowledged on a standalone server (reference/write-concern).
        for wc in (WriteConcern(w='majority'), WriteConcern(w=1)):
            c = self.coll().with_options(write_concern=wc)
            r = c.update_one({'_id': str(wc.document)}, {'$set': {'v': 1}}, upsert=True)
            self.assertTrue(r.acknowledged)
            self.assertEqual(r.upserted_id, str(wc.document))
        raw = self.db.command(SON([('insert', self.coll().name), ('documents', [{'_id': 'x'}]),
                                   ('writeConcern', {'w': 'majority', 'wtimeout': 0})]))
        self.assertEqual(raw['n'], 1)
        self.assertNotIn('writeConcernError', raw)

    def test_delete(self):
        # MANUAL reference/command/delete: limit 1 removes one matching document, 0 all.
        c = self.coll()
        c.insert_many([{'_id': i, 'g': i % 2} for i in range(6)])
        self.assertEqual(c.delete_one({'g': 1}).deleted_count, 1)
        self.assertEqual(c.delete_many({'g': 1}).deleted_count, 2)
        self.assertEqual(c.delete_one({'g': 7}).deleted_count, 0)
        self.assertEqual(sorted(self.ids(c.find())), [0, 2, 4])


class Commands(Case):
    def test_ping_and_unknown_command(self):
        # MANUAL reference/command/ping; an unknown command name: 59 CommandNotFound
        # (reference/error-codes).
        self.assertEqual(self.client.admin.command('ping')['ok'], 1.0)
        with self.assertRaises(OperationFailure) as cm:
            self.db.command('walfoldNoSuchCommand')
        self.assertEqual(cm.exception.code, 59)

    def test_create_indexes(self):
        # MANUAL reference/command/createIndexes: numIndexesBefore/After; creating an existing
        # index again changes nothing; the same name with other keys: 86
        # IndexKeySpecsConflict; the same keys under another name: 85 IndexOptionsConflict.
        c = self.coll()
        c.insert_one({'_id': 1})
        spec = {'key': SON([('g', 1), ('ts', -1), ('_id', -1)]), 'name': 'g_ts'}
        r = self.db.command(SON([('createIndexes', c.name), ('indexes', [spec])]))
        self.assertEqual((r['numIndexesBefore'], r['numIndexesAfter']), (1, 2))
        r = self.db.command(SON([('createIndexes', c.name), ('indexes', [spec])]))
        self.assertEqual((r['numIndexesBefore'], r['numIndexesAfter']), (2, 2))
        with self.assertRaises(OperationFailure) as cm:
            self.db.command(SON([('createIndexes', c.name), ('indexes', [
                {'key': {'other': 1}, 'name': 'g_ts'}])]))
        self.assertEqual(cm.exception.code, 86)
        with self.assertRaises(OperationFailure) as cm:
            self.db.command(SON([('createIndexes', c.name), ('indexes', [
                {'key': SON([('g', 1), ('ts', -1), ('_id', -1)]), 'name': 'other'}])]))
        self.assertEqual(cm.exception.code, 85)
        # On a collection that does not exist yet: it is created.
        r = self.db.command(SON([('createIndexes', self.coll('_new').name),
                                 ('indexes', [spec])]))
        self.assertTrue(r['createdCollectionAutomatically'])

    def test_validator_set_and_removed_by_coll_mod(self):
        # MANUAL core/schema-validation (query-operator validators) and
        # reference/command/collMod: a write whose document fails the validator gets 121
        # DocumentValidationFailure; `validator: {}` removes it. walfold's poison-job tests.
        c = self.coll()
        c.insert_one({'_id': 5})
        self.db.command(SON([('collMod', c.name), ('validator', {'_id': {'$ne': 1}})]))
        code, msg = self.write_error(lambda: c.insert_one({'_id': 1}))
        self.assertEqual(code, 121)
        self.assertIn('Document failed validation', msg)
        self.assertEqual(self.write_error(lambda: c.update_one(
            {'_id': 1}, {'$set': {'v': 1}}, upsert=True))[0], 121)
        c.insert_one({'_id': 2})
        self.db.command(SON([('collMod', c.name), ('validator', {})]))
        c.insert_one({'_id': 1})
        self.assertEqual(sorted(self.ids(c.find())), [1, 2, 5])
        with self.assertRaises(OperationFailure) as cm:
            self.db.command(SON([('collMod', self.coll('_missing').name),
                                 ('validator', {})]))
        self.assertEqual(cm.exception.code, 26)  # NamespaceNotFound


if __name__ == '__main__':
    unittest.main(verbosity=2 if '-v' in sys.argv else 1)
