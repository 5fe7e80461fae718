#!/usr/bin/python3
"""MongoDB wire-protocol stand-in for walfold's tests.

Debian ships no MongoDB server, so the tests talk to this process instead.  The wire protocol
(OP_MSG with kind-0 and kind-1 sections, legacy OP_QUERY handshake, OP_REPLY / OP_MSG replies)
comes from python3-mockupdb; query matching, projection, sorting and aggregation come from
python3-mongomock.  What those two lack for walfold is patched here (see MONGO_STANDIN.md):

* a real command dispatcher with cursors (find / getMore / killCursors, aggregate, ...);
* an update engine with MongoDB's type rules (int32 / int64 / double / Decimal128 arithmetic,
  $push with $each/$sort/$slice/$position, $pull by condition, arrayFilters, upserts, ...);
* Decimal128 comparison, sorting, hashing and arithmetic;
* `ordered` write semantics, write errors, duplicate-key detection (also for unique indexes);
* a lock around the store, so several connections can be served at once.

Usage:  mongo_standin.py --port N [--host 127.0.0.1] [--ready-file PATH] [--verbose]

Port 0 picks a free port.  Once listening, the port number is written (atomically) to the ready
file and "listening on HOST:PORT" is printed to stdout.  SIGTERM / SIGINT stop the server and the
process exits 0.  Errors (unknown commands, failed commands, internal exceptions) are logged to
stderr together with the command name.

Always run it with /usr/bin/python3 (Debian's interpreter that has mockupdb and mongomock).
"""

import argparse
import collections
import datetime
import decimal
import errno
import functools
import gc
import itertools
import math
import numbers
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import uuid

try:
    import bson
    from bson import ObjectId, Regex
    from bson.codec_options import CodecOptions
    from bson.decimal128 import Decimal128, create_decimal128_context
    from bson.int64 import Int64
    from bson.max_key import MaxKey
    from bson.min_key import MinKey
    from bson.raw_bson import RawBSONDocument
    from bson.timestamp import Timestamp
    import mockupdb
    import mongomock
    from mongomock import aggregate as mm_aggregate
    from mongomock import collection as mm_collection
    from mongomock import filtering
    from mongomock import helpers as mm_helpers
    from mongomock import store as mm_store
except ImportError as _exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        'mongo_standin: cannot import %s (%s); run me with /usr/bin/python3 and install '
        'python3-mockupdb python3-mongomock python3-pymongo\n' % (_exc.name, _exc))
    sys.exit(2)

PROG = 'mongo_standin'

# ---------------------------------------------------------------------------------------------
# Server parameters advertised in the handshake.
# ---------------------------------------------------------------------------------------------
MIN_WIRE_VERSION = 0
MAX_WIRE_VERSION = 13
MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE = 48000000
MAX_WRITE_BATCH_SIZE = 100000
SESSION_TIMEOUT_MINUTES = 30
SERVER_VERSION = '6.0.0'
DEFAULT_FIRST_BATCH = 101
CURSOR_IDLE_TIMEOUT = 600.0  # seconds, like cursorTimeoutMillis
# A reply may exceed maxBsonObjectSize by a little (like BSONObjMaxInternalSize).
BATCH_BYTES = MAX_BSON_OBJECT_SIZE - 16 * 1024

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1

_LOG_LOCK = threading.Lock()
_VERBOSE = False


def log(msg):
    with _LOG_LOCK:
        sys.stderr.write('%s: %s\n' % (PROG, msg))
        sys.stderr.flush()


def debug(msg):
    if _VERBOSE:
        log(msg)


class _Missing(object):
    """Marker for an absent field (distinct from null)."""

    def __repr__(self):
        return 'MISSING'

    def __bool__(self):
        return False


MISSING = _Missing()
NOTHING = filtering.NOTHING


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
CODE_NAMES = {
    1: 'InternalError', 2: 'BadValue', 9: 'FailedToParse', 13: 'Unauthorized',
    14: 'TypeMismatch', 16: 'InvalidLength', 20: 'IllegalOperation', 26: 'NamespaceNotFound',
    27: 'IndexNotFound', 28: 'PathNotViable', 40: 'ConflictingUpdateOperators',
    43: 'CursorNotFound', 48: 'NamespaceExists', 52: 'DollarPrefixedFieldName',
    54: 'NotSingleValueField', 56: 'EmptyFieldName', 59: 'CommandNotFound',
    66: 'ImmutableField', 72: 'InvalidOptions', 73: 'InvalidNamespace',
    121: 'DocumentValidationFailure',
    85: 'IndexOptionsConflict', 86: 'IndexKeySpecsConflict', 238: 'NotImplemented',
    11000: 'DuplicateKey', 17419: 'BSONObjectTooLarge', 51024: 'BadValue',
}


class MongoError(Exception):
    """A command or write error with a MongoDB error code."""

    def __init__(self, code, errmsg, **extra):
        Exception.__init__(self, errmsg)
        self.code = code
        self.errmsg = errmsg
        self.extra = extra

    def reply(self):
        doc = {'ok': 0.0, 'errmsg': self.errmsg, 'code': self.code,
               'codeName': CODE_NAMES.get(self.code, 'UnknownError')}
        doc.update(self.extra)
        return doc

    def write_error(self, index):
        doc = {'index': index, 'code': self.code, 'errmsg': self.errmsg}
        doc.update(self.extra)
        return doc


def not_supported(what):
    return MongoError(238, '%s is not supported by the walfold MongoDB stand-in' % what)


# ---------------------------------------------------------------------------------------------
# Value helpers: formatting, type names, BSON comparison order
# ---------------------------------------------------------------------------------------------
def type_name(v):
    if v is None:
        return 'null'
    if isinstance(v, bool):
        return 'bool'
    if isinstance(v, Int64):
        return 'long'
    if isinstance(v, int):
        return 'int' if INT32_MIN <= v <= INT32_MAX else 'long'
    if isinstance(v, float):
        return 'double'
    if isinstance(v, Decimal128):
        return 'decimal'
    if isinstance(v, str):
        return 'string'
    if isinstance(v, dict):
        return 'object'
    if isinstance(v, (list, tuple)):
        return 'array'
    if isinstance(v, (bytes, uuid.UUID)):
        return 'binData'
    if isinstance(v, ObjectId):
        return 'objectId'
    if isinstance(v, datetime.datetime):
        return 'date'
    if isinstance(v, Timestamp):
        return 'timestamp'
    if isinstance(v, (Regex, re.Pattern)):
        return 'regex'
    if isinstance(v, MinKey):
        return 'minKey'
    if isinstance(v, MaxKey):
        return 'maxKey'
    return type(v).__name__


def fmt(v, depth=0):
    """Short, MongoDB-shell-like rendering of a value for error messages."""
    if depth > 3:
        return '...'
    if v is None:
        return 'null'
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, str):
        return '"%s"' % (v if len(v) <= 80 else v[:77] + '...')
    if isinstance(v, (int, float)):
        return repr(int(v)) if isinstance(v, int) else repr(v)
    if isinstance(v, Decimal128):
        return str(v)
    if isinstance(v, ObjectId):
        return "ObjectId('%s')" % v
    if isinstance(v, datetime.datetime):
        return 'new Date(%d)' % bson_datetime_ms(v)
    if isinstance(v, dict):
        items = list(v.items())
        body = ', '.join('%s: %s' % (k, fmt(x, depth + 1)) for k, x in items[:8])
        if len(items) > 8:
            body += ', ...'
        return '{ %s }' % body if body else '{}'
    if isinstance(v, (list, tuple)):
        body = ', '.join(fmt(x, depth + 1) for x in v[:8])
        if len(v) > 8:
            body += ', ...'
        return '[ %s ]' % body if body else '[]'
    return repr(v)


def bson_datetime_ms(dt):
    if dt.tzinfo is not None:
        dt = dt.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    delta = dt - datetime.datetime(1970, 1, 1)
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def utcnow_ms():
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


D128_CTX = create_decimal128_context()
_ORIG_D128_TO_DECIMAL = Decimal128.to_decimal
_D128_MAX_COEFFICIENT = 10 ** 34 - 1


def fast_to_decimal(d):
    """Decimal128 -> decimal.Decimal, ~6x faster than bson's bit-by-bit version."""
    high = d._Decimal128__high  # pylint: disable=protected-access
    if (high & 0x6000000000000000) == 0x6000000000000000:  # NaN, Inf, non-canonical form
        return _ORIG_D128_TO_DECIMAL(d)
    coef = ((high & 0x1ffffffffffff) << 64) | d._Decimal128__low  # pylint: disable=protected-access
    if coef > _D128_MAX_COEFFICIENT:
        return _ORIG_D128_TO_DECIMAL(d)
    return decimal.Decimal('%s%dE%d' % ('-' if high >> 63 else '', coef,
                                        ((high >> 49) & 0x3fff) - 6176))


def fast_decimal128(dec):
    """decimal.Decimal (at most 34 digits) -> Decimal128 without bson's slow bit loop."""
    if dec.is_finite():
        sign, digits, exp = dec.as_tuple()
        if len(digits) <= 34 and -6176 <= exp <= 6111:
            coef = int(''.join(map(str, digits)))
            high = ((exp + 6176) << 49) | (coef >> 64)
            if sign:
                high |= 1 << 63
            return Decimal128((high, coef & 0xFFFFFFFFFFFFFFFF))
    return Decimal128(dec)


def to_decimal(v):
    """Exact-ish conversion of a BSON number to decimal.Decimal (None if not a number).

    Doubles are rounded to 34 significant digits, like MongoDB does when it mixes a double
    with a Decimal128 in arithmetic."""
    if isinstance(v, Decimal128):
        return fast_to_decimal(v)
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return decimal.Decimal(int(v))
    if isinstance(v, float):
        return D128_CTX.create_decimal_from_float(v)
    if isinstance(v, decimal.Decimal):
        return v
    return None


def num_cmp(a, b):
    """Three-way numeric comparison across int/long/double/decimal; NaN sorts first."""
    ta, tb = type(a), type(b)
    if ta is not Decimal128 and tb is not Decimal128:
        a_nan = a != a
        b_nan = b != b
        if a_nan or b_nan:
            return 0 if (a_nan and b_nan) else (-1 if a_nan else 1)
        return (a > b) - (a < b)
    da, db = to_decimal(a), to_decimal(b)
    if da is None or db is None:
        raise TypeError('not numbers: %r, %r' % (a, b))
    a_nan, b_nan = da.is_nan(), db.is_nan()
    if a_nan or b_nan:
        return 0 if (a_nan and b_nan) else (-1 if a_nan else 1)
    return (da > db) - (da < db)


def type_rank(v):
    """Canonical BSON type order (MinKey < null < numbers < string < object < array ...)."""
    if v is None or v is MISSING or v is NOTHING:
        return 5
    t = type(v)
    if t is bool:
        return 40
    if t is int or t is Int64 or t is float or t is Decimal128:
        return 10
    if t is str:
        return 15
    if isinstance(v, dict):
        return 20
    if isinstance(v, (list, tuple)):
        return 25
    if isinstance(v, (bytes, uuid.UUID)):
        return 30
    if isinstance(v, ObjectId):
        return 35
    if isinstance(v, datetime.datetime):
        return 45
    if isinstance(v, Timestamp):
        return 47
    if isinstance(v, (Regex, re.Pattern)):
        return 50
    if isinstance(v, MinKey):
        return 1
    if isinstance(v, MaxKey):
        return 127
    if isinstance(v, bool):
        return 40
    if isinstance(v, (int, float)):
        return 10
    if isinstance(v, str):
        return 15
    return 100


def _cmp(a, b):
    return (a > b) - (a < b)


def bson_cmp(a, b):
    """Compare two values in MongoDB's BSON order; returns -1, 0 or 1."""
    ra, rb = type_rank(a), type_rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 10:
        return num_cmp(a, b)
    if ra in (5, 1, 127):
        return 0
    if ra == 20:
        ia, ib = list(a.items()), list(b.items())
        for (ka, va), (kb, vb) in zip(ia, ib):
            c = _cmp(type_rank(va), type_rank(vb))
            if c:
                return c
            c = _cmp(ka, kb)
            if c:
                return c
            c = bson_cmp(va, vb)
            if c:
                return c
        return _cmp(len(ia), len(ib))
    if ra == 25:
        for va, vb in zip(a, b):
            c = bson_cmp(va, vb)
            if c:
                return c
        return _cmp(len(a), len(b))
    if ra == 30:
        ba = a.bytes if isinstance(a, uuid.UUID) else a
        bb = b.bytes if isinstance(b, uuid.UUID) else b
        c = _cmp(len(ba), len(bb))
        if c:
            return c
        c = _cmp(getattr(a, 'subtype', 0), getattr(b, 'subtype', 0))
        if c:
            return c
        return _cmp(bytes(ba), bytes(bb))
    if ra == 35:
        return _cmp(a.binary, b.binary)
    if ra == 50:
        pa, pb = a.pattern, b.pattern
        c = _cmp(pa, pb)
        if c:
            return c
        return _cmp(str(a.flags), str(b.flags))
    try:
        return _cmp(a, b)
    except TypeError:
        return _cmp(repr(a), repr(b))


def bson_eq(a, b):
    return bson_cmp(a, b) == 0


def same_bson(a, b):
    """Would `a` and `b` encode to the same BSON bytes?  (Type- and order-sensitive.)

    Used to decide whether an update modified a document (nModified) and for the immutable
    _id check; much cheaper than encoding both sides."""
    if a is b:
        return True
    ta, tb = type(a), type(b)
    if ta is dict and tb is dict:
        if len(a) != len(b):
            return False
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            if ka != kb or not (va is vb or same_bson(va, vb)):
                return False
        return True
    if ta is list and tb is list:
        if len(a) != len(b):
            return False
        for va, vb in zip(a, b):
            if not (va is vb or same_bson(va, vb)):
                return False
        return True
    if ta is not tb:
        if isinstance(a, dict) and isinstance(b, dict):
            return same_bson(dict(a), dict(b))
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return same_bson(list(a), list(b))
        if ta is int and tb is int:
            return a == b
        return False
    if ta is Decimal128:
        return a.bid == b.bid
    if ta is float:
        if a != a:
            return b != b
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if ta is int:
        # Python ints encode as int32 or int64 depending on magnitude.
        return a == b and (INT32_MIN <= a <= INT32_MAX) == (INT32_MIN <= b <= INT32_MAX)
    try:
        return a == b
    except Exception:  # pylint: disable=broad-except
        return False


_CONTAINERS = (dict, list)
# _id types whose dict lookup is exactly MongoDB's equality on _id (bool is not: True == 1).
_ID_FAST_TYPES = frozenset([int, Int64, str, ObjectId])


def clone(v):
    """Deep copy of dicts and lists (scalars are immutable and shared)."""
    t = type(v)
    if t is dict:
        return {k: (clone(x) if type(x) in _CONTAINERS else x) for k, x in v.items()}
    if t is list:
        return [(clone(x) if type(x) in _CONTAINERS else x) for x in v]
    if isinstance(v, dict):
        return {k: clone(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clone(x) for x in v]
    return v


def store_key(_id):
    if isinstance(_id, dict):
        return mm_helpers.hashdict(_id)
    return _id


# ---------------------------------------------------------------------------------------------
# Patches: Decimal128 semantics, mongomock gaps, mockupdb receive path
# ---------------------------------------------------------------------------------------------
def _patch_decimal128():
    """Give bson's Decimal128 MongoDB's numeric semantics inside this process.

    MongoDB compares Decimal128 numerically with every other number type (1.50 == 1.5 == 1.5e0
    == NumberInt-free double 1.5); mongomock compares with Python operators, so teach Decimal128
    rich comparison, hashing consistent with int/float, and arithmetic in a 34-digit context."""

    def _cmp_or_none(a, b):
        if type_rank(b) != 10:
            return None
        return num_cmp(a, b)

    def _eq(self, other):
        c = _cmp_or_none(self, other)
        if c is None:
            return NotImplemented
        return c == 0

    def _ne(self, other):
        c = _cmp_or_none(self, other)
        if c is None:
            return NotImplemented
        return c != 0

    def _rich(pred):
        def method(self, other):
            c = _cmp_or_none(self, other)
            if c is None:
                return NotImplemented
            return pred(c)
        return method

    def _hash(self):
        d = self.to_decimal()
        if d.is_nan():
            return hash('Decimal128-NaN')
        return hash(d)

    def _binop(fn, reflected=False):
        def method(self, other):
            if isinstance(other, bool):
                return NotImplemented
            o = to_decimal(other)
            if o is None:
                return NotImplemented
            s = fast_to_decimal(self)
            return fast_decimal128(fn(o, s) if reflected else fn(s, o))
        return method

    Decimal128.to_decimal = fast_to_decimal
    Decimal128.__eq__ = _eq
    Decimal128.__ne__ = _ne
    Decimal128.__lt__ = _rich(lambda c: c < 0)
    Decimal128.__le__ = _rich(lambda c: c <= 0)
    Decimal128.__gt__ = _rich(lambda c: c > 0)
    Decimal128.__ge__ = _rich(lambda c: c >= 0)
    Decimal128.__hash__ = _hash
    Decimal128.__add__ = _binop(D128_CTX.add)
    Decimal128.__radd__ = _binop(D128_CTX.add, True)
    Decimal128.__sub__ = _binop(D128_CTX.subtract)
    Decimal128.__rsub__ = _binop(D128_CTX.subtract, True)
    Decimal128.__mul__ = _binop(D128_CTX.multiply)
    Decimal128.__rmul__ = _binop(D128_CTX.multiply, True)
    Decimal128.__truediv__ = _binop(D128_CTX.divide)
    Decimal128.__rtruediv__ = _binop(D128_CTX.divide, True)
    Decimal128.__neg__ = lambda self: Decimal128(D128_CTX.minus(self.to_decimal()))
    Decimal128.__pos__ = lambda self: self
    Decimal128.__abs__ = lambda self: Decimal128(D128_CTX.abs(self.to_decimal()))
    Decimal128.__float__ = lambda self: float(self.to_decimal())
    Decimal128.__int__ = lambda self: int(self.to_decimal())
    Decimal128.__bool__ = lambda self: bool(self.to_decimal())
    numbers.Number.register(Decimal128)


class IndexedDocs(collections.OrderedDict):
    """A collection's documents (store key -> document) that also keeps, for each top-level
    field a query has looked up by plain equality, value -> keys of the documents holding it.

    It narrows `{field: <int|str>, ...}` finds (walfold's last_transactions recompute by
    account_id) from a scan of the whole collection to the documents that can match; the full
    matcher still decides. Documents are never modified in place (updates clone and replace
    them), so maintaining the index on __setitem__/__delitem__ keeps it exact. Candidates are
    returned in the collection's natural (insertion) order."""

    def __init__(self, *args, **kw):
        self._fields = {}   # field -> {value: {key: None}}; None-valued key sets keep order
        self._odd = {}      # field -> {key: None}: lists, Decimal128, floats (equal by element /
        self._seq = {}      # numerically, so always candidates); key -> insertion number
        self._next = 0
        super().__init__(*args, **kw)

    @staticmethod
    def _slot(doc, field):
        x = doc.get(field, MISSING) if isinstance(doc, dict) else MISSING
        if x is MISSING:
            return None, None
        if isinstance(x, (list, Decimal128, float)):
            return 'odd', None
        try:
            hash(x)
        except TypeError:
            return None, None  # a sub-document equals no int or str
        return 'val', x

    def _index_add(self, key, doc):
        for field, vals in self._fields.items():
            kind, x = self._slot(doc, field)
            if kind == 'val':
                vals.setdefault(x, {})[key] = None
            elif kind == 'odd':
                self._odd[field][key] = None

    def _index_remove(self, key, doc):
        for field, vals in self._fields.items():
            kind, x = self._slot(doc, field)
            if kind == 'val':
                ks = vals.get(x)
                if ks is not None:
                    ks.pop(key, None)
                    if not ks:
                        del vals[x]
            elif kind == 'odd':
                self._odd[field].pop(key, None)

    def __setitem__(self, key, doc):
        old = super().get(key, MISSING)
        if old is not MISSING:
            self._index_remove(key, old)
        else:
            self._seq[key] = self._next
            self._next += 1
        super().__setitem__(key, doc)
        self._index_add(key, doc)

    def __delitem__(self, key):
        doc = super().__getitem__(key)
        super().__delitem__(key)
        self._index_remove(key, doc)
        del self._seq[key]

    def pop(self, key, *default):
        if key in self:
            doc = super().__getitem__(key)
            del self[key]
            return doc
        return super().pop(key, *default)

    def popitem(self, last=True):
        key = next(reversed(self)) if last else next(iter(self))
        return key, self.pop(key)

    def clear(self):
        super().clear()
        self._fields, self._odd, self._seq = {}, {}, {}

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return super().__getitem__(key)

    def update(self, *args, **kw):
        for k, v in dict(*args, **kw).items():
            self[k] = v

    def equal_candidates(self, field, value):
        """Documents whose `field` may equal `value` (an int or str), in natural order."""
        vals = self._fields.get(field)
        if vals is None:
            vals = self._fields[field] = {}
            odd = self._odd[field] = {}
            for key, doc in self.items():
                kind, x = self._slot(doc, field)
                if kind == 'val':
                    vals.setdefault(x, {})[key] = None
                elif kind == 'odd':
                    odd[key] = None
        keys = list(vals.get(value, ()))
        keys.extend(self._odd[field])
        if len(keys) > 1:
            seq = self._seq
            keys.sort(key=seq.__getitem__)
        get = super().__getitem__
        return [get(k) for k in keys]


def _patch_mongomock():
    orig_compare_type = filtering._get_compare_type  # pylint: disable=protected-access

    def _get_compare_type(val):
        if isinstance(val, MinKey):
            return 1
        if isinstance(val, MaxKey):
            return 127
        if isinstance(val, Timestamp):
            return 47
        if isinstance(val, Decimal128):
            return 10
        return orig_compare_type(val)

    filtering._get_compare_type = _get_compare_type  # pylint: disable=protected-access

    def _is_int32(v):
        return (isinstance(v, int) and not isinstance(v, (bool, Int64))
                and INT32_MIN <= v <= INT32_MAX)

    def _is_int64(v):
        return isinstance(v, Int64) or (
            isinstance(v, int) and not isinstance(v, bool) and not INT32_MIN <= v <= INT32_MAX)

    tm = filtering.TYPE_MAP
    tm['int'] = _is_int32
    tm['long'] = _is_int64
    tm['null'] = lambda v: v is None
    tm['timestamp'] = lambda v: isinstance(v, Timestamp)
    tm['regex'] = lambda v: isinstance(v, (Regex, re.Pattern))
    tm['minKey'] = lambda v: isinstance(v, MinKey)
    tm['maxKey'] = lambda v: isinstance(v, MaxKey)
    tm['decimal'] = lambda v: isinstance(v, Decimal128)
    tm['number'] = lambda v: type_rank(v) == 10
    for code, name in {1: 'double', 2: 'string', 3: 'object', 4: 'array', 5: 'binData',
                       7: 'objectId', 8: 'bool', 9: 'date', 10: 'null', 11: 'regex',
                       16: 'int', 17: 'timestamp', 18: 'long', 19: 'decimal', -1: 'minKey',
                       127: 'maxKey'}.items():
        tm[code] = tm[name]

    # A plain top-level equality ({account_id: 17, ...}) is checked against the raw document
    # with a cheap comparison first; the full matcher still decides. It never drops a document
    # the matcher could accept: arrays (which match by element), Decimal128 (compared
    # numerically by MongoDB) and documents without a plain value stay candidates. Without it
    # every find scans the whole collection through the generic matcher (no secondary indexes
    # here), which made walfold's last_transactions recompute the stand-in's bottleneck.
    def equality_prefilter(cands, flt):
        if not isinstance(flt, dict):
            return cands
        for k, v in flt.items():
            if k.startswith('$') or '.' in k or isinstance(v, bool) or not isinstance(v, (int, str)):
                continue
            missing = object()

            def maybe(d, k=k, v=v, missing=missing):
                x = d.get(k, missing)
                return x == v or isinstance(x, (list, Decimal128, float))

            return [d for d in cands if maybe(d)]
        return cands

    # mongomock's find/count/distinct/aggregate-$lookup iterate through here: look documents up
    # by _id when the filter pins it, and match with the same matcher as the write path.
    def indexed_candidates(store, flt):
        docs = store._documents  # pylint: disable=protected-access
        if not isinstance(flt, dict) or not isinstance(docs, IndexedDocs):
            return None
        for k, v in flt.items():
            if k.startswith('$') or '.' in k or isinstance(v, bool) or not isinstance(v, (int, str)):
                continue
            store._remove_expired_documents()  # pylint: disable=protected-access
            return docs.equal_candidates(k, v)
        return None

    # Every collection's documents live in an IndexedDocs (see there).
    orig_store_init, orig_store_drop = mm_store.CollectionStore.__init__, mm_store.CollectionStore.drop

    def store_init(self, *args, **kw):
        orig_store_init(self, *args, **kw)
        self._documents = IndexedDocs(self._documents)  # pylint: disable=protected-access

    def store_drop(self):
        orig_store_drop(self)
        self._documents = IndexedDocs(self._documents)  # pylint: disable=protected-access

    mm_store.CollectionStore.__init__ = store_init
    mm_store.CollectionStore.drop = store_drop

    def _iter_documents(self, filter):  # pylint: disable=redefined-builtin
        if filter is None:
            filter = {}
        cands = None
        if isinstance(filter, dict):
            cands = id_candidates(self._store._documents, filter)  # pylint: disable=protected-access
        if cands is None:
            cands = indexed_candidates(self._store, filter)
        if cands is None:
            cands = list(self._store.documents)  # pylint: disable=protected-access
            cands = equality_prefilter(cands, filter)
        if not cands and filter:
            filter_applies(filter, {})  # still reject invalid filters
        return (d for d in cands if filter_applies(filter, d))

    mm_collection.Collection._iter_documents = _iter_documents  # pylint: disable=protected-access

    # $group results: MongoDB puts _id first.
    orig_group = mm_aggregate._PIPELINE_HANDLERS['$group']  # pylint: disable=protected-access

    def _group(in_collection, database, options):
        out = orig_group(in_collection, database, options)
        fixed = []
        for doc in out:
            if isinstance(doc, dict) and '_id' in doc and next(iter(doc)) != '_id':
                d = {'_id': doc['_id']}
                d.update((k, v) for k, v in doc.items() if k != '_id')
                doc = d
            fixed.append(doc)
        return fixed

    mm_aggregate._PIPELINE_HANDLERS['$group'] = _group  # pylint: disable=protected-access


def _patch_mockupdb():
    # Plain dicts decode faster than OrderedDict and keep field order all the same.
    mockupdb.CODEC_OPTIONS = CodecOptions(document_class=dict)

    def mock_server_receive(sock, length):
        """Linear-time replacement for mockupdb's quadratic `msg += chunk` loop."""
        buf = bytearray(length)
        view = memoryview(buf)
        got = 0
        while got < length:
            n = sock.recv_into(view[got:], length - got)
            if n == 0:
                raise socket.error(errno.ECONNRESET, 'closed')
            got += n
        return bytes(buf)

    mockupdb.mock_server_receive = mock_server_receive

    def unpack_op_msg(cls, msg, client, server, request_id):
        """OP_MSG parser that keeps the kind-0 body first.

        mockupdb merges sections in wire order, so a kind-1 document sequence sent before the
        body (the spec allows any order) became the first key, i.e. the "command name".  It
        also measured the sequence identifier in characters instead of bytes.  Here the body
        comes first, each kind-1 sequence is added under its identifier, and malformed
        messages raise ValueError (the connection is then closed, as mongod does)."""
        flags, = struct.unpack_from('<I', msg, 0)
        if flags & ~mockupdb._ALL_OP_MSG_FLAGS:  # pylint: disable=protected-access
            raise ValueError('OP_MSG flags has reserved bits set: 0x%x' % flags)
        checksum = None
        end = len(msg)
        if flags & mockupdb.OP_MSG_FLAGS['checksumPresent']:
            end -= 4
            checksum, = struct.unpack_from('<I', msg, end)
        pos = 4
        body = None
        sequences = []
        while pos < end:
            kind = msg[pos]
            pos += 1
            size, = struct.unpack_from('<i', msg, pos)
            if size < 5 or pos + size > end:
                raise ValueError('OP_MSG section size %d out of bounds' % size)
            if kind == 0:
                if body is not None:
                    raise ValueError('OP_MSG has more than one kind-0 section')
                body = bson.decode(msg[pos:pos + size], mockupdb.CODEC_OPTIONS)
            elif kind == 1:
                nul = msg.index(b'\x00', pos + 4, pos + size)
                identifier = msg[pos + 4:nul].decode('utf-8')
                docs = bson.decode_all(msg[nul + 1:pos + size], mockupdb.CODEC_OPTIONS)
                sequences.append((identifier, docs))
            else:
                raise ValueError('OP_MSG section kind %d is not supported' % kind)
            pos += size
        if body is None:
            raise ValueError('OP_MSG has no kind-0 section')
        for identifier, docs in sequences:
            if identifier in body:
                raise ValueError("OP_MSG field '%s' is both in the body and a document "
                                 "sequence" % identifier)
            body[identifier] = docs
        if '$db' not in body:
            raise ValueError('OP_MSG body has no $db field')
        return mockupdb.OpMsg(body, namespace=body['$db'], flags=flags, _client=client,
                              request_id=request_id, checksum=checksum, _server=server)

    mockupdb.OpMsg.unpack = classmethod(unpack_op_msg)


_patch_decimal128()
_patch_mongomock()
_patch_mockupdb()


def id_candidates(documents, flt):
    """Documents that can match `flt` found through the _id key, or None to scan everything."""
    if '_id' not in flt:
        return None
    v = flt['_id']
    if isinstance(v, dict):
        if v and all(isinstance(k, str) and k.startswith('$') for k in v):
            if len(v) == 1 and '$eq' in v:
                vals = [v['$eq']]
            elif len(v) == 1 and '$in' in v and isinstance(v['$in'], list):
                vals = v['$in']
            else:
                return None
        else:
            vals = [v]
    elif isinstance(v, (list, tuple, Regex, re.Pattern)):
        return None
    else:
        vals = [v]
    out = []
    seen = set()
    for x in vals:
        if isinstance(x, (list, tuple, Regex, re.Pattern)):
            return None
        if isinstance(x, dict) and any(isinstance(k, str) and k.startswith('$') for k in x):
            return None
        try:
            d = documents.get(store_key(x))
        except TypeError:
            return None
        if d is not None and id(d) not in seen:
            seen.add(id(d))
            out.append(d)
    return out


class _Fallback(Exception):
    """The fast matcher cannot decide; use mongomock's general one."""


_FALLBACK = _Fallback()
_SIMPLE_TYPES = frozenset([type(None), bool, int, Int64, float, Decimal128, str,
                           datetime.datetime, ObjectId, Timestamp])
_RANGE_PREDICATES = {'$gt': lambda c: c > 0, '$gte': lambda c: c >= 0,
                     '$lt': lambda c: c < 0, '$lte': lambda c: c <= 0}


def _fast_operand(v):
    t = type(v)
    if t not in _SIMPLE_TYPES:
        raise _FALLBACK
    if t is float and v != v:
        raise _FALLBACK
    if t is Decimal128 and (v.bid[15] & 0x7c) == 0x7c:  # NaN
        raise _FALLBACK
    return v


def _fast_value(doc, key):
    """Value at a dotted path through sub-documents; arrays on the way -> fallback."""
    if '.' not in key:
        v = doc.get(key, MISSING)
    else:
        v = doc
        for p in key.split('.'):
            if isinstance(v, dict):
                v = v.get(p, MISSING)
                if v is MISSING:
                    return MISSING
            elif isinstance(v, list):
                raise _FALLBACK
            else:
                return MISSING
    t = type(v)
    if t is list or t is float and v != v or t is Decimal128 and (v.bid[15] & 0x7c) == 0x7c:
        raise _FALLBACK
    return v


def _fast_eq(v, operand):
    if operand is None:
        return v is MISSING or v is None
    if v is MISSING:
        return False
    return type_rank(v) == type_rank(operand) and bson_cmp(v, operand) == 0


_IN_CACHE = (None, None)


def _in_set(arg):
    """The members of an $in/$nin list as a set when they are all ints and strings (no bools,
    doubles, decimals: their equality is not Python's), else None. The last list is cached:
    a find by {_id: {$in: [...]}} tests every candidate against the same list, which made
    walfold's read of a batch's accounts quadratic in the batch's size."""
    global _IN_CACHE  # pylint: disable=global-statement
    cached, members = _IN_CACHE
    if cached is arg:
        return members
    members = set()
    for a in arg:
        if type(a) not in _ID_FAST_TYPES or type(a) is ObjectId:
            members = None
            break
        members.add(a)
    _IN_CACHE = (arg, members)
    return members


def _fast_ops(v, cond):
    for op, arg in cond.items():
        if op == '$eq':
            ok = _fast_eq(v, _fast_operand(arg))
        elif op in _RANGE_PREDICATES:
            if arg is None:
                # {$gte: null} / {$lte: null} match null and missing; $gt / $lt never match.
                ok = op in ('$gte', '$lte') and (v is MISSING or v is None)
                if not ok:
                    return False
                continue
            _fast_operand(arg)
            ok = (v is not MISSING and type_rank(v) == type_rank(arg)
                  and _RANGE_PREDICATES[op](bson_cmp(v, arg)))
        elif op == '$ne':
            ok = not _fast_eq(v, _fast_operand(arg))
        elif op == '$in' or op == '$nin':
            if type(arg) is not list:
                raise _FALLBACK
            members = _in_set(arg) if type(v) in _ID_FAST_TYPES else None
            if members is not None:
                hit = v in members
            else:
                hit = False
                for a in arg:
                    if _fast_eq(v, _fast_operand(a)):
                        hit = True
                        break
            ok = hit if op == '$in' else not hit
        elif op == '$exists':
            ok = (v is not MISSING) == bool(arg)
        elif op == '$not':
            if type(arg) is not dict or not arg or not all(k[:1] == '$' for k in arg):
                raise _FALLBACK
            ok = not _fast_ops(v, arg)
        else:
            raise _FALLBACK
        if not ok:
            return False
    return True


def fast_match(flt, doc):
    """MongoDB matching for the common shapes (scalars, sub-document paths, comparison and
    set operators); raises _Fallback for anything else (arrays, regexes, $elemMatch, ...)."""
    for key, cond in flt.items():
        if key[:1] == '$':
            if key in ('$and', '$or', '$nor'):
                if type(cond) is not list or not cond or not all(type(c) is dict for c in cond):
                    raise _FALLBACK
                if key == '$and':
                    ok = all(fast_match(c, doc) for c in cond)
                elif key == '$or':
                    ok = any(fast_match(c, doc) for c in cond)
                else:
                    ok = not any(fast_match(c, doc) for c in cond)
                if not ok:
                    return False
                continue
            if key == '$comment':
                continue
            raise _FALLBACK
        v = _fast_value(doc, key)
        if type(cond) is dict:
            if not cond or not all(k[:1] == '$' for k in cond):
                raise _FALLBACK
            if not _fast_ops(v, cond):
                return False
        elif not _fast_eq(v, _fast_operand(cond)):
            return False
    return True


def filter_applies(flt, doc):
    try:
        return fast_match(flt, doc)
    except _Fallback:
        pass
    try:
        return filtering.filter_applies(flt, doc)
    except mongomock.OperationFailure as exc:
        raise MongoError(getattr(exc, 'code', None) or 2, str(exc)) from exc
    except NotImplementedError as exc:
        raise MongoError(238, 'not supported by the stand-in (mongomock): %s' % exc) from exc


def is_operator_doc(v):
    return isinstance(v, dict) and bool(v) and all(
        isinstance(k, str) and k.startswith('$') for k in v)


def elem_matches(query, elem):
    """Does an array element satisfy `query` (an operator expression or a document query)?"""
    if is_operator_doc(query) and not any(k in ('$and', '$or', '$nor') for k in query):
        return filter_applies({'v': query}, {'v': elem})
    if isinstance(query, dict):
        return isinstance(elem, dict) and filter_applies(query, elem)
    return bson_eq(elem, query)


# ---------------------------------------------------------------------------------------------
# Number arithmetic with MongoDB's type rules
# ---------------------------------------------------------------------------------------------
def num_kind(v):
    t = type(v)
    if t is Int64:
        return 'long'
    if t is int:
        return 'int' if INT32_MIN <= v <= INT32_MAX else 'long'
    if t is float:
        return 'double'
    if t is Decimal128:
        return 'decimal'
    if t is bool:
        return None
    if isinstance(v, Int64):
        return 'long'
    if isinstance(v, int) and not isinstance(v, bool):
        return 'int' if INT32_MIN <= v <= INT32_MAX else 'long'
    if isinstance(v, float):
        return 'double'
    return None


def num_arith(op, a, b, what, ctx):
    ka, kb = num_kind(a), num_kind(b)
    if ka == 'decimal' or kb == 'decimal':
        da, db = to_decimal(a), to_decimal(b)
        r = D128_CTX.add(da, db) if op == 'add' else D128_CTX.multiply(da, db)
        return fast_decimal128(r)
    if ka == 'double' or kb == 'double':
        return float(a) + float(b) if op == 'add' else float(a) * float(b)
    r = int(a) + int(b) if op == 'add' else int(a) * int(b)
    if ka == 'int' and kb == 'int' and INT32_MIN <= r <= INT32_MAX:
        return r
    if INT64_MIN <= r <= INT64_MAX:
        return Int64(r)
    raise MongoError(2, 'Failed to apply %s operations to current value (%s) for document '
                        '{_id: %s}' % (what, fmt(a), fmt(ctx.doc_id)))


def num_zero_like(v):
    k = num_kind(v)
    if k == 'decimal':
        return Decimal128(D128_CTX.multiply(decimal.Decimal(0), v.to_decimal()))
    if k == 'double':
        return 0.0
    if k == 'long':
        return Int64(0)
    return 0


def as_int(v, what):
    if isinstance(v, bool) or num_kind(v) is None:
        raise MongoError(2, '%s must be a number, not %s' % (what, type_name(v)))
    if isinstance(v, Decimal128):
        d = v.to_decimal()
        if d != d.to_integral_value():
            raise MongoError(2, '%s must be an integer' % what)
        return int(d)
    if isinstance(v, float) and v != int(v):
        raise MongoError(2, '%s must be an integer' % what)
    return int(v)


# ---------------------------------------------------------------------------------------------
# Update engine
# ---------------------------------------------------------------------------------------------
class UpdateCtx(object):
    __slots__ = ('query', 'array_filters', 'is_insert', 'doc_id')

    def __init__(self, query, array_filters):
        self.query = query
        self.array_filters = array_filters
        self.is_insert = False
        self.doc_id = None

    def positional_index(self, prefix, arr):
        """Index matched by the positional `$` operator for the array at `prefix`."""
        pstr = '.'.join(prefix)
        conds = []
        for key, cond in iter_conditions(self.query):
            if key == pstr:
                conds.append((None, cond))
            elif key.startswith(pstr + '.'):
                conds.append((key[len(pstr) + 1:], cond))
        if conds:
            for j, elem in enumerate(arr):
                ok = True
                for sub, cond in conds:
                    if sub is None:
                        if isinstance(cond, dict) and list(cond) == ['$elemMatch']:
                            m = elem_matches(cond['$elemMatch'], elem)
                        else:
                            m = filter_applies({'v': cond}, {'v': elem})
                    else:
                        m = isinstance(elem, (dict, list)) and filter_applies({sub: cond}, elem)
                    if not m:
                        ok = False
                        break
                if ok:
                    return j
        raise MongoError(2, 'The positional operator did not find the match needed from the '
                            'query.')


def iter_conditions(query):
    for k, v in query.items():
        if k == '$and' and isinstance(v, list):
            for sub in v:
                if isinstance(sub, dict):
                    for item in iter_conditions(sub):
                        yield item
        elif not k.startswith('$'):
            yield k, v


def split_path(path):
    if not isinstance(path, str) or path == '':
        raise MongoError(56, 'An empty update path is not valid.')
    parts = path.split('.')
    if '' in parts:
        raise MongoError(56, "The update path '%s' contains an empty field name, which is not "
                             "allowed." % path)
    return parts


def _index(part):
    if part.isdigit() and part.isascii():
        return int(part)
    return None


def _is_positional(part):
    return part == '$' or (part.startswith('$[') and part.endswith(']'))


def resolve(doc, parts, create):
    """Walk to the container of the last path element.

    Returns (container, key) where key is an int for arrays; None when the path does not exist
    and `create` is false.  With `create`, missing sub-documents are created (arrays are padded
    with nulls like MongoDB does) and paths through scalars raise PathNotViable."""
    cur = doc
    last = len(parts) - 1
    for i in range(last):
        p = parts[i]
        if isinstance(cur, dict):
            nxt = cur.get(p, MISSING)
            if nxt is MISSING:
                if not create:
                    return None
                nxt = {}
                cur[p] = nxt
        else:  # list
            idx = _index(p)
            if idx is None:
                if not create:
                    return None
                raise MongoError(28, "Cannot create field '%s' in element {%s: %s}" % (
                    p, parts[i - 1] if i else '', fmt(cur)))
            if idx >= len(cur):
                if not create:
                    return None
                cur.extend([None] * (idx + 1 - len(cur)))
                nxt = {}
                cur[idx] = nxt
            else:
                nxt = cur[idx]
        if not isinstance(nxt, (dict, list)):
            if not create:
                return None
            raise MongoError(28, "Cannot create field '%s' in element {%s: %s}" % (
                parts[i + 1], p, fmt(nxt)))
        cur = nxt
    key = parts[last]
    if isinstance(cur, list):
        idx = _index(key)
        if idx is None:
            if not create:
                return None
            raise MongoError(28, "Cannot create field '%s' in element {%s: %s}" % (
                key, parts[last - 1] if last else '', fmt(cur)))
        return cur, idx
    return cur, key


def cget(c, k):
    if isinstance(c, list):
        return c[k] if k < len(c) else MISSING
    return c.get(k, MISSING)


def cset(c, k, v):
    if isinstance(c, list):
        if k >= len(c):
            c.extend([None] * (k + 1 - len(c)))
        c[k] = v
    else:
        c[k] = v


def get_path(doc, path):
    """Value at a dotted path through sub-documents (and numeric array indexes)."""
    if '.' not in path:
        return doc.get(path, MISSING) if isinstance(doc, dict) else MISSING
    cur = doc
    for p in path.split('.'):
        if isinstance(cur, dict):
            cur = cur.get(p, MISSING)
        elif isinstance(cur, list):
            idx = _index(p)
            if idx is None or idx >= len(cur):
                return MISSING
            cur = cur[idx]
        else:
            return MISSING
        if cur is MISSING:
            return MISSING
    return cur


def op_set(doc, parts, value, ctx, path):
    c, k = resolve(doc, parts, True)
    cset(c, k, value)


def op_unset(doc, parts, value, ctx, path):
    r = resolve(doc, parts, False)
    if r is None:
        return
    c, k = r
    if isinstance(c, list):
        if k < len(c):
            c[k] = None
    else:
        c.pop(k, None)


def _op_arith(op, what):
    def apply(doc, parts, value, ctx, path):
        c, k = resolve(doc, parts, True)
        old = cget(c, k)
        if old is MISSING:
            cset(c, k, value if op == 'add' else num_zero_like(value))
            return
        if num_kind(old) is None:
            raise MongoError(14, "Cannot apply %s to a value of non-numeric type. {_id: %s} has "
                                 "the field '%s' of non-numeric type %s" % (
                                     what, fmt(ctx.doc_id), parts[-1], type_name(old)))
        cset(c, k, num_arith(op, old, value, what, ctx))
    return apply


op_inc = _op_arith('add', '$inc')
op_mul = _op_arith('mul', '$mul')


def _op_minmax(is_max):
    def apply(doc, parts, value, ctx, path):
        c, k = resolve(doc, parts, True)
        old = cget(c, k)
        if old is MISSING:
            cset(c, k, value)
            return
        r = bson_cmp(value, old)
        if (r > 0) if is_max else (r < 0):
            cset(c, k, value)
    return apply


op_max = _op_minmax(True)
op_min = _op_minmax(False)

_TS_LOCK = threading.Lock()
_TS_STATE = [0, 0]


def next_timestamp():
    with _TS_LOCK:
        now = int(time.time())
        if now == _TS_STATE[0]:
            _TS_STATE[1] += 1
        else:
            _TS_STATE[0], _TS_STATE[1] = now, 1
        return Timestamp(_TS_STATE[0], _TS_STATE[1])


def op_current_date(doc, parts, value, ctx, path):
    if value is True or (isinstance(value, dict) and value.get('$type') == 'date'):
        v = utcnow_ms()
    elif isinstance(value, dict) and value.get('$type') == 'timestamp':
        v = next_timestamp()
    elif value is False:
        v = utcnow_ms()
    else:
        raise MongoError(2, "%s is not valid type for $currentDate. Please use a boolean "
                            "('true') or a $type expression ({$type: 'timestamp/date'})."
                         % fmt(value))
    op_set(doc, parts, v, ctx, path)


def op_rename(doc, parts, value, ctx, path):
    dst = split_path(value)
    r = resolve(doc, parts, False)
    if r is None:
        return
    c, k = r
    if isinstance(c, list):
        raise MongoError(2, "The source field cannot be an array element, '%s' in doc with "
                            "_id: %s has an array field called '%s'" % (
                                path, fmt(ctx.doc_id), parts[-2] if len(parts) > 1 else ''))
    v = c.get(k, MISSING)
    if v is MISSING:
        return
    del c[k]
    c2, k2 = resolve(doc, dst, True)
    if isinstance(c2, list):
        raise MongoError(2, "The destination field cannot be an array element, '%s' in doc "
                            "with _id: %s has an array field called '%s'" % (
                                value, fmt(ctx.doc_id), dst[-2] if len(dst) > 1 else ''))
    c2[k2] = v


def _array_at(doc, parts, create, opname, path, ctx):
    """(container, key, list) for array operators; list is a fresh list when missing."""
    r = resolve(doc, parts, create)
    if r is None:
        return None
    c, k = r
    old = cget(c, k)
    if old is MISSING:
        return c, k, None
    if not isinstance(old, list):
        if opname == '$push':
            raise MongoError(2, "The field '%s' must be an array but is of type %s in document "
                                "{_id: %s}" % (path, type_name(old), fmt(ctx.doc_id)))
        if opname == '$addToSet':
            raise MongoError(2, "Cannot apply $addToSet to non-array field. Field named '%s' has "
                                "non-array type %s" % (parts[-1], type_name(old)))
        if opname == '$pop':
            raise MongoError(14, "Path '%s' contains an element of non-array type '%s'" % (
                path, type_name(old)))
        raise MongoError(2, 'Cannot apply %s to a non-array value' % opname)
    return c, k, old


def sort_fields(spec):
    """Validated $push $sort specification: [(field or None, direction)]."""
    if isinstance(spec, dict):
        if not spec:
            raise MongoError(2, 'The $sort pattern is empty when it should be a set of fields.')
        fields = []
        for f, d in spec.items():
            d = as_int(d, 'The $sort element value')
            if d not in (1, -1):
                raise MongoError(2, 'The $sort element value must be either 1 or -1')
            fields.append((f, d))
        return fields
    d = as_int(spec, 'The $sort element value')
    if d not in (1, -1):
        raise MongoError(2, 'The $sort element value must be either 1 or -1')
    return [(None, d)]


def _sort_value(e, field):
    if field is None:
        return e
    return get_path(e, field) if isinstance(e, dict) else MISSING


def sort_cmp_for(fields):
    def cmp(a, b):
        for f, d in fields:
            c = bson_cmp(_sort_value(a, f), _sort_value(b, f))
            if c:
                return c * d
        return 0
    return cmp


def _simple_sort_key(v):
    r = type_rank(v)
    if r == 5:
        return (5, 0)
    if r == 10:
        if v != v or (type(v) is Decimal128 and (v.bid[15] & 0x7c) == 0x7c):
            raise _FALLBACK
        return (10, v)
    if r in (15, 35, 40, 45, 47):
        return (r, v)
    raise _FALLBACK


def push_sort(arr, spec):
    """$push's $sort: 1/-1 on whole values or a compound {field: 1/-1, ...} on embedded docs."""
    fields = sort_fields(spec)
    try:
        if len({d for _, d in fields}) == 1:
            return sorted(arr, key=lambda e: tuple(_simple_sort_key(_sort_value(e, f))
                                                   for f, _ in fields),
                          reverse=fields[0][1] < 0)
        out = list(arr)
        for f, d in reversed(fields):  # stable sorts, least significant key first
            out.sort(key=lambda e: _simple_sort_key(_sort_value(e, f)), reverse=d < 0)
        return out
    except _Fallback:
        return sorted(arr, key=functools.cmp_to_key(sort_cmp_for(fields)))


def op_push(doc, parts, value, ctx, path):
    c, k, arr = _array_at(doc, parts, True, '$push', path, ctx)
    if arr is None:
        arr = []
    if isinstance(value, dict) and '$each' in value:
        for key in value:
            if key not in ('$each', '$slice', '$sort', '$position'):
                raise MongoError(2, 'Unrecognized clause in $push: %s' % key)
        each = value['$each']
        if not isinstance(each, list):
            raise MongoError(2, 'The argument to $each in $push must be an array but it was of '
                                'type: %s' % type_name(each))
        pos = value.get('$position')
        if pos is None:
            arr.extend(each)
        else:
            pos = as_int(pos, 'The value for $position')
            if pos < 0:
                pos = max(0, len(arr) + pos)
            arr[pos:pos] = each
        if '$sort' in value:
            arr = push_sort(arr, value['$sort'])
        if '$slice' in value:
            sl = as_int(value['$slice'], 'The value for $slice')
            arr = arr[:sl] if sl >= 0 else arr[sl:]
    else:
        arr.append(value)
    cset(c, k, arr)


def op_add_to_set(doc, parts, value, ctx, path):
    c, k, arr = _array_at(doc, parts, True, '$addToSet', path, ctx)
    if arr is None:
        arr = []
    if isinstance(value, dict) and '$each' in value:
        if len(value) != 1:
            raise MongoError(2, 'Found unexpected fields after $each in $addToSet: %s'
                             % fmt(value))
        each = value['$each']
        if not isinstance(each, list):
            raise MongoError(2, 'The argument to $each in $addToSet must be an array but it was '
                                'of type %s' % type_name(each))
    else:
        each = [value]
    for v in each:
        if not any(bson_eq(e, v) for e in arr):
            arr.append(v)
    cset(c, k, arr)


def op_pull(doc, parts, value, ctx, path):
    r = _array_at(doc, parts, False, '$pull', path, ctx)
    if r is None or r[2] is None:
        return
    c, k, arr = r
    if isinstance(value, dict):
        if is_operator_doc(value) and not any(x in ('$and', '$or', '$nor') for x in value):
            def match(e):
                return filter_applies({'v': value}, {'v': e})
        else:
            def match(e):
                return isinstance(e, dict) and filter_applies(value, e)
    else:
        def match(e):
            return bson_eq(e, value)
    new = [e for e in arr if not match(e)]
    if len(new) != len(arr):
        cset(c, k, new)


def op_pull_all(doc, parts, value, ctx, path):
    if not isinstance(value, list):
        raise MongoError(2, '$pullAll requires an array argument but was given a %s'
                         % type_name(value))
    r = _array_at(doc, parts, False, '$pullAll', path, ctx)
    if r is None or r[2] is None:
        return
    c, k, arr = r
    new = [e for e in arr if not any(bson_eq(e, v) for v in value)]
    if len(new) != len(arr):
        cset(c, k, new)


def op_pop(doc, parts, value, ctx, path):
    n = as_int(value, '$pop value')
    if n not in (1, -1):
        raise MongoError(9, '$pop expects 1 or -1, found: %s' % fmt(value))
    r = _array_at(doc, parts, False, '$pop', path, ctx)
    if r is None or r[2] is None:
        return
    c, k, arr = r
    if arr:
        cset(c, k, arr[:-1] if n == 1 else arr[1:])


def op_bit(doc, parts, value, ctx, path):
    if not isinstance(value, dict) or not value:
        raise MongoError(9, 'The $bit modifier is not compatible with a %s. You must pass in an '
                            'embedded document: {$bit: {field: {and/or/xor: #}}' % type_name(value))
    c, k = resolve(doc, parts, True)
    old = cget(c, k)
    if old is MISSING:
        old = 0
    if num_kind(old) not in ('int', 'long'):
        raise MongoError(14, 'Cannot apply $bit to a value of non-integral type.{_id: %s} has the '
                             'field %s of non-integer type %s' % (
                                 fmt(ctx.doc_id), parts[-1], type_name(old)))
    result = int(old)
    is_long = num_kind(old) == 'long'
    for opname, operand in value.items():
        if num_kind(operand) not in ('int', 'long'):
            raise MongoError(2, 'The $bit modifier field must be an Integer(32/64 bit); a \'%s\' '
                                'is not supported here' % type_name(operand))
        is_long = is_long or num_kind(operand) == 'long'
        if opname == 'and':
            result &= int(operand)
        elif opname == 'or':
            result |= int(operand)
        elif opname == 'xor':
            result ^= int(operand)
        else:
            raise MongoError(2, "The $bit modifier only supports 'and', 'or', and 'xor', not "
                                "'%s' which is an unknown operator: {%s: %s}" % (
                                    opname, opname, fmt(operand)))
    cset(c, k, Int64(result) if is_long else result)


UPDATE_OPS = {
    '$set': op_set, '$setOnInsert': op_set, '$unset': op_unset, '$inc': op_inc, '$mul': op_mul,
    '$max': op_max, '$min': op_min, '$currentDate': op_current_date, '$rename': op_rename,
    '$push': op_push, '$addToSet': op_add_to_set, '$pull': op_pull, '$pullAll': op_pull_all,
    '$pop': op_pop, '$bit': op_bit,
}


def _path_sort_key(parts):
    """Fields with numeric names in numeric order, others lexicographically (MongoDB 5.0+)."""
    for p in parts:
        if p.isdigit():
            return tuple(('\x00%030d' % int(x)) if (x.isdigit() and x.isascii()) else x
                         for x in parts)
    return tuple(parts)


_PLAN_CACHE = {}
_PLAN_CACHE_MAX = 4096


def _update_plan(update):
    """Validated, path-sorted (opname, path, parts, fn) list for an update's shape."""
    ops = []
    for opname, spec in update.items():
        fn = UPDATE_OPS.get(opname)
        if fn is None:
            raise MongoError(9, "Unknown modifier: %s. Expected a valid update modifier or "
                                "pipeline-style update specified as an array" % opname)
        if not isinstance(spec, dict):
            raise MongoError(9, 'Modifiers operate on fields but we found type %s instead. For '
                                'example: {$mod: {<field>: ...}} not {%s: %s}' % (
                                    type_name(spec), opname, fmt(spec)))
        for path, value in spec.items():
            parts = split_path(path)
            if opname == '$rename':
                if not isinstance(value, str):
                    raise MongoError(2, "The 'to' field for $rename must be a string: %s: %s"
                                     % (path, fmt(value)))
                dst = split_path(value)
                if dst == parts:
                    raise MongoError(2, 'The source and target field for $rename must differ: '
                                        '%s: %s' % (path, fmt(value)))
                n = min(len(dst), len(parts))
                if dst[:n] == parts[:n]:
                    raise MongoError(2, 'The source and target field for $rename must not be on '
                                        'the same path: %s: %s' % (path, fmt(value)))
                ops.append((_path_sort_key(dst), dst, '$rename-target', None, value))
            ops.append((_path_sort_key(parts), parts, opname, fn, path))
    ops.sort(key=lambda o: o[0])
    for a, b in zip(ops, ops[1:]):
        pa, pb = a[1], b[1]
        if pb[:len(pa)] == pa:
            raise MongoError(40, "Updating the path '%s' would create a conflict at '%s'" % (
                '.'.join(pb), '.'.join(pa)))
    return [(opname, path, parts, fn) for _, parts, opname, fn, path in ops if fn is not None]


def compile_update(update):
    """Validate an operator update document; returns (parts, opname, fn, value, path) tuples
    sorted by field path (MongoDB 5.0+ applies updates in that order).

    The path analysis only depends on the update's shape (operators and field names), which
    repeats across the statements of a bulk write, so it is cached."""
    try:
        shape = tuple((op, tuple(spec.items()) if op == '$rename' else tuple(spec))
                      for op, spec in update.items())
        plan = _PLAN_CACHE.get(shape)
    except (AttributeError, TypeError):  # non-document operator argument, unhashable
        shape, plan = None, None
    if plan is None:
        plan = _update_plan(update)
        if shape is not None:
            if len(_PLAN_CACHE) >= _PLAN_CACHE_MAX:
                _PLAN_CACHE.clear()
            _PLAN_CACHE[shape] = plan
    ops = []
    for opname, path, parts, fn in plan:
        value = update[opname][path]
        if (opname == '$inc' or opname == '$mul') and num_kind(value) is None:
            raise MongoError(14, 'Cannot %s with non-numeric argument: {%s: %s}' % (
                'increment' if opname == '$inc' else 'multiply', path, fmt(value)))
        ops.append((parts, opname, fn, value, path))
    return ops


def parse_array_filters(array_filters):
    if array_filters is None:
        return {}
    if not isinstance(array_filters, list):
        raise MongoError(14, "BSON field 'arrayFilters' is the wrong type '%s', expected type "
                             "'array'" % type_name(array_filters))
    out = {}
    for flt in array_filters:
        if not isinstance(flt, dict) or not flt:
            raise MongoError(9, 'Cannot use an expression without a top-level field name in '
                                'arrayFilters')
        idents = set()
        for key in flt:
            if key.startswith('$'):
                raise MongoError(9, 'Cannot use an expression without a top-level field name in '
                                    'arrayFilters')
            idents.add(key.split('.', 1)[0])
        if len(idents) != 1:
            raise MongoError(9, 'Error parsing array filter :: caused by :: Expected a single '
                                'top-level field name, found %s' % ', '.join(sorted(idents)))
        ident = idents.pop()
        if not re.match(r'^[a-z][a-zA-Z0-9]*$', ident):
            raise MongoError(2, "Error parsing array filter :: caused by :: The top-level field "
                                "name must be an alphanumeric string beginning with a lowercase "
                                "letter, found '%s'" % ident)
        if ident in out:
            raise MongoError(9, "Found multiple array filters with the same top-level field "
                                "name %s" % ident)
        out[ident] = flt
    return out


def expand_positional(doc, parts, ctx):
    """Concrete paths for a path with $, $[] or $[ident] elements."""
    results = []
    used = set()

    def walk(cur, i, prefix):
        if i == len(parts):
            results.append(prefix)
            return
        p = parts[i]
        if _is_positional(p):
            if not isinstance(cur, list):
                raise MongoError(2, "The path '%s' must exist in the document in order to apply "
                                    "array updates." % '.'.join(prefix))
            if p == '$':
                idxs = [ctx.positional_index(prefix, cur)]
            elif p == '$[]':
                idxs = range(len(cur))
            else:
                ident = p[2:-1]
                flt = ctx.array_filters.get(ident)
                if flt is None:
                    raise MongoError(2, "No array filter found for identifier '%s' in path '%s'"
                                     % (ident, '.'.join(parts)))
                used.add(ident)
                idxs = [j for j, e in enumerate(cur) if filter_applies(flt, {ident: e})]
            for j in idxs:
                walk(cur[j], i + 1, prefix + [str(j)])
            return
        if p.startswith('$'):
            raise MongoError(52, "The dollar ($) prefixed field '%s' in '%s' is not valid for "
                                 "storage." % (p, '.'.join(parts)))
        if isinstance(cur, dict):
            nxt = cur.get(p, MISSING)
        elif isinstance(cur, list) and _index(p) is not None and _index(p) < len(cur):
            nxt = cur[_index(p)]
        else:
            nxt = MISSING
        if nxt is MISSING:
            if any(_is_positional(x) for x in parts[i + 1:]):
                raise MongoError(2, "The path '%s' must exist in the document in order to apply "
                                    "array updates." % '.'.join(prefix + [p]))
            results.append(prefix + list(parts[i:]))
            return
        walk(nxt, i + 1, prefix + [p])

    walk(doc, 0, [])
    return results


def apply_ops(doc, ops, ctx):
    for parts, opname, fn, value, path in ops:
        if opname == '$setOnInsert' and not ctx.is_insert:
            continue
        if any(_is_positional(p) for p in parts):
            for concrete in expand_positional(doc, parts, ctx):
                fn(doc, concrete, value, ctx, path)
        else:
            fn(doc, parts, value, ctx, path)


def check_array_filters_used(ops, ctx, update):
    if not ctx.array_filters:
        return
    used = set()
    for parts, _, _, _, _ in ops:
        for p in parts:
            if p.startswith('$[') and p.endswith(']') and p != '$[]':
                used.add(p[2:-1])
    unused = set(ctx.array_filters) - used
    if unused:
        raise MongoError(9, "The array filter for identifier '%s' was not used in the update %s"
                         % (sorted(unused)[0], fmt(update)))


def equality_pairs(query):
    """(path, value) pairs of a query that seed an upserted document."""
    for k, v in query.items():
        if k == '$and' and isinstance(v, list):
            for sub in v:
                if isinstance(sub, dict):
                    for item in equality_pairs(sub):
                        yield item
        elif k == '$or' and isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict):
            for item in equality_pairs(v[0]):
                yield item
        elif k.startswith('$'):
            continue
        elif is_operator_doc(v):
            if '$eq' in v:
                yield k, v['$eq']
            elif ('$in' in v and isinstance(v['$in'], list) and len(v['$in']) == 1
                  and not isinstance(v['$in'][0], (Regex, re.Pattern))):
                yield k, v['$in'][0]
        elif isinstance(v, (Regex, re.Pattern)):
            continue
        else:
            yield k, v


def upsert_seed(query):
    doc = {}
    seen = []
    for path, value in equality_pairs(query):
        parts = split_path(path)
        for other in seen:
            n = min(len(other), len(parts))
            if other[:n] == parts[:n]:
                raise MongoError(54, "cannot infer query fields to set, path '%s' is matched "
                                     "twice" % path if other == parts else
                                     "cannot infer query fields to set, both paths '%s' and "
                                     "'%s' are matched" % ('.'.join(other), path))
        seen.append(parts)
        c, k = resolve(doc, parts, True)
        cset(c, k, clone(value))
    return doc


def id_first(doc):
    if not doc or next(iter(doc)) == '_id':
        return doc
    out = {'_id': doc['_id']}
    for k, v in doc.items():
        if k != '_id':
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# Collections, indexes, cursors
# ---------------------------------------------------------------------------------------------
def hkey(v):
    """Hashable, MongoDB-equality-preserving key for unique index entries."""
    if isinstance(v, bool):
        return ('__bool', v)
    if isinstance(v, dict):
        return ('__doc', tuple((k, hkey(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return ('__arr', tuple(hkey(x) for x in v))
    if v is MISSING:
        return None
    try:
        hash(v)
    except TypeError:
        return ('__repr', repr(v))
    return v


class UniqueIndex(object):
    def __init__(self, name, fields, sparse, partial):
        self.name = name
        self.fields = fields
        self.sparse = sparse
        self.partial = partial
        self.entries = {}

    def key_of(self, doc):
        if self.partial is not None and not filter_applies(self.partial, doc):
            return None
        vals = [get_path(doc, f) for f in self.fields]
        if self.sparse and all(v is MISSING for v in vals):
            return None
        return tuple(hkey(v) for v in vals)

    def dup_error(self, ns, doc):
        key_value = {}
        for f in self.fields:
            v = get_path(doc, f)
            key_value[f] = None if v is MISSING else v
        return MongoError(11000, 'E11000 duplicate key error collection: %s index: %s dup key: '
                                 '%s' % (ns, self.name, fmt(key_value)),
                          keyPattern={f: 1 for f in self.fields}, keyValue=key_value)


class CollMeta(object):
    """Index catalogue and validator of one collection (documents live in the mongomock
    store)."""

    def __init__(self):
        self.indexes = {'_id_': {'v': 2, 'key': {'_id': 1}, 'name': '_id_'}}
        self.uniques = {}
        self.validator = None  # a query document (validationLevel strict, action error)

    def validate(self, doc):
        if self.validator and not filter_applies(self.validator, doc):
            raise MongoError(121, 'Document failed validation',
                             errInfo={'failingDocumentId': doc.get('_id'),
                                      'details': {'operatorName': 'query',
                                                  'validator': self.validator}})


class CursorState(object):
    __slots__ = ('cursor_id', 'ns', 'docs', 'pos', 'last_used', 'conn_id')

    def __init__(self, cursor_id, ns, docs, pos):
        self.cursor_id = cursor_id
        self.ns = ns
        self.docs = docs
        self.pos = pos
        self.last_used = time.monotonic()


def take_batch(docs, pos, batch_size):
    """Encode up to batch_size docs (None = no count limit) within the reply size budget."""
    out = []
    total = 0
    n = len(docs)
    while pos < n and (batch_size is None or len(out) < batch_size):
        raw = docs[pos]
        if not isinstance(raw, RawBSONDocument):
            raw = RawBSONDocument(bson.encode(raw))
        size = len(raw.raw)
        if out and total + size > BATCH_BYTES:
            break
        out.append(raw)
        total += size
        pos += 1
    return out, pos


def check_db_name(db):
    if not isinstance(db, str) or not db or any(c in db for c in '/\\. "$\x00'):
        raise MongoError(73, "Invalid database name: '%s'" % db)
    return db


def check_coll_name(cmdname, db, coll):
    if not isinstance(coll, str):
        raise MongoError(73, "collection name has invalid type %s" % type_name(coll))
    if not coll or '$' in coll or '\x00' in coll or coll.startswith('.'):
        raise MongoError(73, "Invalid namespace specified '%s.%s'" % (db, coll))
    return coll


def get_bool(cmd, key, default=False):
    v = cmd.get(key, default)
    if v is None:
        return default
    return bool(v)


def get_doc(cmd, key, cmdname, default=None):
    v = cmd.get(key, default)
    if v is None:
        return default
    if not isinstance(v, dict):
        raise MongoError(14, "BSON field '%s.%s' is the wrong type '%s', expected type 'object'"
                         % (cmdname, key, type_name(v)))
    return v


def get_nonneg_int(cmd, key, cmdname, default=None):
    v = cmd.get(key, default)
    if v is None:
        return default
    if num_kind(v) is None:
        raise MongoError(14, "BSON field '%s.%s' is the wrong type '%s', expected a number"
                         % (cmdname, key, type_name(v)))
    return int(float(v)) if not isinstance(v, Decimal128) else int(v)


# ---------------------------------------------------------------------------------------------
# Command engine
# ---------------------------------------------------------------------------------------------
class Engine(object):
    def __init__(self):
        self.client = mongomock.MongoClient()
        self.store = self.client._store  # pylint: disable=protected-access
        self.lock = threading.RLock()
        self.meta = {}
        self.cursors = {}
        self.started = time.monotonic()
        self.connections = 0
        self.total_connections = 0
        self._mm_colls = {}
        self.commands = {
            'hello': self.cmd_hello, 'isMaster': self.cmd_hello, 'ismaster': self.cmd_hello,
            'ping': self.cmd_ping, 'buildInfo': self.cmd_build_info,
            'buildinfo': self.cmd_build_info, 'endSessions': self.cmd_ok,
            'serverStatus': self.cmd_server_status,
            'insert': self.cmd_insert, 'update': self.cmd_update, 'delete': self.cmd_delete,
            'find': self.cmd_find, 'getMore': self.cmd_get_more,
            'killCursors': self.cmd_kill_cursors, 'count': self.cmd_count,
            'aggregate': self.cmd_aggregate, 'distinct': self.cmd_distinct,
            'findAndModify': self.cmd_find_and_modify, 'findandmodify': self.cmd_find_and_modify,
            'createIndexes': self.cmd_create_indexes, 'listIndexes': self.cmd_list_indexes,
            'dropIndexes': self.cmd_drop_indexes, 'deleteIndexes': self.cmd_drop_indexes,
            'drop': self.cmd_drop, 'dropDatabase': self.cmd_drop_database,
            'listCollections': self.cmd_list_collections,
            'listDatabases': self.cmd_list_databases, 'create': self.cmd_create,
            'renameCollection': self.cmd_rename_collection, 'collMod': self.cmd_coll_mod,
        }
        # Commands that only read static data do not take the store lock.
        self.lockless = {'hello', 'isMaster', 'ismaster', 'ping', 'buildInfo', 'buildinfo',
                         'endSessions', 'serverStatus', 'insert', 'update', 'delete'}

    # -- store helpers --------------------------------------------------------------------------
    def cstore(self, db, coll):
        return self.store[db][coll]

    def documents(self, db, coll):
        return self.store[db][coll]._documents  # pylint: disable=protected-access

    def exists(self, db, coll):
        return bool(self.store[db][coll].is_created)

    def meta_of(self, db, coll):
        key = (db, coll)
        m = self.meta.get(key)
        if m is None:
            m = self.meta[key] = CollMeta()
        return m

    def mm_coll(self, db, coll):
        key = (db, coll)
        c = self._mm_colls.get(key)
        if c is None:
            c = self._mm_colls[key] = self.client[db][coll]
        return c

    def match_docs(self, db, coll, query, limit=None):
        docs = self.documents(db, coll)
        cands = id_candidates(docs, query)
        if cands is None:
            cands = list(docs.values())
        out = []
        for d in cands:
            if filter_applies(query, d):
                out.append(d)
                if limit is not None and len(out) >= limit:
                    break
        if not cands:
            filter_applies(query, {})  # validate the filter even on an empty collection
        return out

    def query_docs(self, db, coll, flt, sort=None, projection=None, skip=0, limit=0):
        if not self.exists(db, coll):
            if flt:
                filter_applies(flt, {})
            return []
        sort_list = None
        if sort:
            sort_list = []
            for k, v in sort.items():
                if isinstance(v, dict):
                    if v.get('$meta'):
                        raise not_supported('sorting by $meta')
                    raise MongoError(2, 'Illegal key in $sort specification: %s: %s'
                                     % (k, fmt(v)))
                d = as_int(v, 'sort direction')
                if d not in (1, -1):
                    raise MongoError(2, '$sort key ordering must be 1 (for ascending) or -1 '
                                        '(for descending)')
                sort_list.append((k, d))
        proj = dict(projection) if projection else None
        mm = self.mm_coll(db, coll)
        try:
            cur = mm.find(flt, proj, skip=skip, limit=limit, sort=sort_list)
            return list(cur)
        except mongomock.OperationFailure as exc:
            raise MongoError(getattr(exc, 'code', None) or 2, str(exc)) from exc
        except ValueError as exc:
            raise MongoError(2, str(exc)) from exc

    def project(self, db, coll, doc, fields):
        if not fields:
            return clone(doc)
        mm = self.mm_coll(db, coll)
        try:
            return mm._copy_only_fields(doc, dict(fields), dict)  # pylint: disable=protected-access
        except ValueError as exc:
            raise MongoError(2, str(exc)) from exc

    # -- write primitives (caller holds the lock) -----------------------------------------------
    def insert_doc(self, db, coll, doc):
        if not isinstance(doc, dict):
            raise MongoError(2, 'document to insert must be an object')
        if '_id' not in doc:
            new = {'_id': ObjectId()}
            new.update(doc)
            doc = new
        else:
            doc = id_first(doc)
        _id = doc['_id']
        if isinstance(_id, (list, tuple)):
            raise MongoError(2, "can't use an array for _id")
        if isinstance(_id, (Regex, re.Pattern)):
            raise MongoError(2, "can't use a regex for _id")
        docs = self.documents(db, coll)
        key = store_key(_id)
        if key in docs:
            raise MongoError(11000, 'E11000 duplicate key error collection: %s.%s index: _id_ '
                                    'dup key: { _id: %s }' % (db, coll, fmt(_id)),
                             keyPattern={'_id': 1}, keyValue={'_id': _id})
        meta = self.meta.get((db, coll))
        if meta is not None:
            meta.validate(doc)
        if meta is not None and meta.uniques:
            for ui in meta.uniques.values():
                k = ui.key_of(doc)
                if k is not None and k in ui.entries:
                    raise ui.dup_error('%s.%s' % (db, coll), doc)
            for ui in meta.uniques.values():
                k = ui.key_of(doc)
                if k is not None:
                    ui.entries[k] = key
        docs[key] = doc
        return _id

    def replace_doc(self, db, coll, old, new):
        key = store_key(old['_id'])
        meta = self.meta.get((db, coll))
        if meta is not None:
            meta.validate(new)
        if meta is not None and meta.uniques:
            changes = []
            for ui in meta.uniques.values():
                ko, kn = ui.key_of(old), ui.key_of(new)
                if ko == kn:
                    continue
                if kn is not None and kn in ui.entries and ui.entries[kn] != key:
                    raise ui.dup_error('%s.%s' % (db, coll), new)
                changes.append((ui, ko, kn))
            for ui, ko, kn in changes:
                if ko is not None and ui.entries.get(ko) == key:
                    del ui.entries[ko]
                if kn is not None:
                    ui.entries[kn] = key
        self.documents(db, coll)[key] = new

    def remove_doc(self, db, coll, doc):
        key = store_key(doc['_id'])
        meta = self.meta.get((db, coll))
        if meta is not None and meta.uniques:
            for ui in meta.uniques.values():
                k = ui.key_of(doc)
                if k is not None and ui.entries.get(k) == key:
                    del ui.entries[k]
        del self.documents(db, coll)[key]

    def drop_coll(self, db, coll):
        self.cstore(db, coll).drop()
        self.meta.pop((db, coll), None)

    def _ensure_hit(self, db, coll, stmt):
        """The stored document when `stmt` is {q: {_id: v}, u: {$setOnInsert: {plain fields}}}
        (any upsert, no multi, no arrayFilters) and the document exists: such a statement
        matches it and changes nothing, so the general path (validation, clone, apply,
        compare) would come to the same n=1, nModified=0. Otherwise None. walfold sends one
        per document it touches (create-if-missing), half of its statements."""
        if type(stmt) is not dict or stmt.get('multi') or stmt.get('arrayFilters') is not None:
            return None
        q, u = stmt.get('q'), stmt.get('u')
        if type(q) is not dict or type(u) is not dict or len(q) != 1 or len(u) != 1:
            return None
        soi = u.get('$setOnInsert')
        v = q.get('_id', MISSING)
        if type(soi) is not dict or not soi or type(v) not in _ID_FAST_TYPES:
            return None
        for k in soi:
            if type(k) is not str or not k or k[0] == '$' or '.' in k:
                return None
        return self.documents(db, coll).get(v)

    def update_stmt(self, db, coll, stmt):
        """Run one update statement. Returns (n, nModified, upserted_id|MISSING, old, new)."""
        hit = self._ensure_hit(db, coll, stmt)
        if hit is not None:
            return 1, 0, MISSING, hit, hit
        if not isinstance(stmt, dict):
            raise MongoError(14, 'update statement must be an object')
        q = stmt.get('q', {})
        if q is None:
            q = {}
        if not isinstance(q, dict):
            raise MongoError(14, "BSON field 'update.updates.q' is the wrong type '%s', expected "
                                 "type 'object'" % type_name(q))
        if 'u' not in stmt:
            raise MongoError(40414, "BSON field 'update.updates.u' is missing but a required "
                                    "field")
        u = stmt['u']
        if isinstance(u, list):
            raise not_supported('pipeline-style update (u as an array)')
        if not isinstance(u, dict):
            raise MongoError(14, "BSON field 'update.updates.u' is the wrong type '%s'"
                             % type_name(u))
        upsert = get_bool(stmt, 'upsert')
        multi = get_bool(stmt, 'multi')
        is_ops = bool(u) and next(iter(u)).startswith('$')
        if is_ops:
            for k in u:
                if not k.startswith('$'):
                    raise MongoError(9, "Unknown modifier: %s. Expected a valid update modifier "
                                        "or pipeline-style update specified as an array" % k)
            ops = compile_update(u)
        else:
            if multi:
                raise MongoError(9, 'multi update is not supported for replacement-style update')
            for k in u:
                if k.startswith('$'):
                    raise MongoError(52, "The dollar ($) prefixed field '%s' in '%s' is not "
                                         "allowed in the context of an update's replacement "
                                         "document. Consider using an aggregation pipeline "
                                         "with $replaceWith." % (k, k))
            ops = None
        ctx = UpdateCtx(q, parse_array_filters(stmt.get('arrayFilters')))
        if ops is not None:
            check_array_filters_used(ops, ctx, u)
        elif ctx.array_filters:
            raise MongoError(72, 'arrayFilters may not be specified for replacement-style '
                                 'updates')
        matched = self.match_docs(db, coll, q, None if multi else 1)
        n = n_modified = 0
        last_old = last_new = None
        for old in matched:
            ctx.doc_id = old.get('_id')
            if ops is not None:
                new = clone(old)
                apply_ops(new, ops, ctx)
                if '_id' not in new or not same_bson(new['_id'], old['_id']):
                    raise MongoError(66, "Performing an update on the path '_id' would modify the "
                                         "immutable field '_id'")
            else:
                if '_id' in u and not same_bson(u['_id'], old['_id']):
                    raise MongoError(66, "After applying the update, the (immutable) field '_id' "
                                         "was found to have been altered to _id: %s"
                                     % fmt(u['_id']))
                new = {'_id': old['_id']}
                for k, v in u.items():
                    if k != '_id':
                        new[k] = v
            n += 1
            if not same_bson(new, old):
                self.replace_doc(db, coll, old, new)
                n_modified += 1
            last_old, last_new = old, new
        if n == 0 and upsert:
            ctx.is_insert = True
            seed = upsert_seed(q)
            ctx.doc_id = seed.get('_id')
            if ops is not None:
                new = seed
                apply_ops(new, ops, ctx)
                if '_id' in seed and '_id' in new and ctx.doc_id is not None and \
                        not same_bson(new['_id'], ctx.doc_id):
                    raise MongoError(66, "Performing an update on the path '_id' would modify the "
                                         "immutable field '_id'")
            else:
                new = {}
                if '_id' in seed:
                    new['_id'] = seed['_id']
                elif '_id' in u:
                    new['_id'] = u['_id']
                for k, v in u.items():
                    if k != '_id':
                        new[k] = v
            if '_id' not in new:
                new = dict(itertools.chain((('_id', ObjectId()),), new.items()))
            new = id_first(new)
            self.cstore(db, coll).create()
            upserted = self.insert_doc(db, coll, new)
            return 1, 0, upserted, None, new
        return n, n_modified, MISSING, last_old, last_new

    # -- command dispatch -------------------------------------------------------------------------
    def run_command(self, doc, db, conn):
        if not isinstance(doc, dict) or not doc:
            return MongoError(59, 'no such command: empty command document').reply()
        name = next(iter(doc))
        handler = self.commands.get(name)
        if handler is None:
            log('unknown command %r on database %r (replying CommandNotFound)' % (name, db))
            return MongoError(59, "no such command: '%s'" % name).reply()
        started = time.monotonic() if _VERBOSE else 0.0
        try:
            check_db_name(db)
            if name in self.lockless:
                reply = handler(doc, db, conn)
            else:
                with self.lock:
                    reply = handler(doc, db, conn)
            if _VERBOSE:
                debug('conn %d: %s %s ok (%.1f ms)' % (
                    conn.conn_id, name, fmt_ns(db, doc), (time.monotonic() - started) * 1e3))
        except MongoError as exc:
            log('command %s on %s failed: code %d %s: %s' % (
                name, fmt_ns(db, doc), exc.code, CODE_NAMES.get(exc.code, ''), exc.errmsg))
            return exc.reply()
        except mongomock.OperationFailure as exc:
            code = getattr(exc, 'code', None) or 2
            log('command %s on %s failed (mongomock): code %d: %s' % (
                name, fmt_ns(db, doc), code, exc))
            return MongoError(code, str(exc)).reply()
        except NotImplementedError as exc:
            log('command %s on %s uses something not supported: %s' % (
                name, fmt_ns(db, doc), exc))
            return MongoError(238, 'not supported by the walfold MongoDB stand-in: %s'
                              % exc).reply()
        except Exception as exc:  # pylint: disable=broad-except
            log('internal error in command %s on %s: %r\n%s' % (
                name, fmt_ns(db, doc), exc, traceback.format_exc()))
            return MongoError(1, 'stand-in internal error in %s: %r' % (name, exc)).reply()
        if isinstance(reply, dict) and 'ok' not in reply:
            reply['ok'] = 1.0
        return reply

    # -- handshake / misc -----------------------------------------------------------------------
    def cmd_hello(self, cmd, db, conn):
        return {
            'helloOk': True,
            'ismaster': True,
            'isWritablePrimary': True,
            'maxBsonObjectSize': MAX_BSON_OBJECT_SIZE,
            'maxMessageSizeBytes': MAX_MESSAGE_SIZE,
            'maxWriteBatchSize': MAX_WRITE_BATCH_SIZE,
            'localTime': utcnow_ms(),
            'logicalSessionTimeoutMinutes': SESSION_TIMEOUT_MINUTES,
            'connectionId': conn.conn_id,
            'minWireVersion': MIN_WIRE_VERSION,
            'maxWireVersion': MAX_WIRE_VERSION,
            'readOnly': False,
            'ok': 1.0,
        }

    def cmd_ping(self, cmd, db, conn):
        return {'ok': 1.0}

    cmd_ok = cmd_ping

    def cmd_build_info(self, cmd, db, conn):
        return {
            'version': SERVER_VERSION,
            'gitVersion': 'walfold-mongo-standin',
            'versionArray': [6, 0, 0, 0],
            'bits': 64,
            'debug': False,
            'maxBsonObjectSize': MAX_BSON_OBJECT_SIZE,
            'storageEngines': ['mongomock'],
            'javascriptEngine': 'none',
            'modules': [],
            'ok': 1.0,
        }

    def cmd_server_status(self, cmd, db, conn):
        up = time.monotonic() - self.started
        return {
            'host': socket.gethostname(), 'version': SERVER_VERSION, 'process': 'mongod',
            'pid': Int64(os.getpid()), 'uptime': float(int(up)), 'uptimeMillis': Int64(up * 1000),
            'localTime': utcnow_ms(),
            'connections': {'current': self.connections, 'available': 1000,
                            'totalCreated': self.total_connections},
            'storageEngine': {'name': 'mongomock'},
            'ok': 1.0,
        }

    # -- writes -----------------------------------------------------------------------------------
    def _write_list(self, cmd, db, key, cmdname):
        coll = check_coll_name(cmdname, db, cmd[cmdname])
        items = cmd.get(key)
        if not isinstance(items, list):
            raise MongoError(40414 if items is None else 14,
                             "BSON field '%s.%s' is missing but a required field" % (cmdname, key)
                             if items is None else
                             "BSON field '%s.%s' is the wrong type '%s', expected type 'array'"
                             % (cmdname, key, type_name(items)))
        if len(items) > MAX_WRITE_BATCH_SIZE or not items:
            raise MongoError(16, 'Write batch sizes must be between 1 and %d. Got %d operations.'
                             % (MAX_WRITE_BATCH_SIZE, len(items)))
        return coll, items, get_bool(cmd, 'ordered', True)

    def _finish_write(self, cmdname, db, coll, reply, errors):
        if errors:
            reply['writeErrors'] = errors
            first = errors[0]
            log('%s %s.%s: %d write error(s); first: index %d code %d: %s' % (
                cmdname, db, coll, len(errors), first['index'], first['code'], first['errmsg']))
        reply['ok'] = 1.0
        return reply

    def cmd_insert(self, cmd, db, conn):
        coll, docs, ordered = self._write_list(cmd, db, 'documents', 'insert')
        n = 0
        errors = []
        with self.lock:
            self.cstore(db, coll).create()
        for i, doc in enumerate(docs):
            try:
                with self.lock:
                    self.insert_doc(db, coll, doc)
                n += 1
            except MongoError as exc:
                errors.append(exc.write_error(i))
                if ordered:
                    break
        return self._finish_write('insert', db, coll, {'n': n}, errors)

    def cmd_update(self, cmd, db, conn):
        coll, stmts, ordered = self._write_list(cmd, db, 'updates', 'update')
        n = n_modified = 0
        upserted = []
        errors = []
        for i, stmt in enumerate(stmts):
            try:
                with self.lock:
                    sn, sm, up_id, _, _ = self.update_stmt(db, coll, stmt)
                n += sn
                n_modified += sm
                if up_id is not MISSING:
                    upserted.append({'index': i, '_id': up_id})
            except MongoError as exc:
                errors.append(exc.write_error(i))
                if ordered:
                    break
        reply = {'n': n, 'nModified': n_modified}
        if upserted:
            reply['upserted'] = upserted
        return self._finish_write('update', db, coll, reply, errors)

    def cmd_delete(self, cmd, db, conn):
        coll, stmts, ordered = self._write_list(cmd, db, 'deletes', 'delete')
        n = 0
        errors = []
        for i, stmt in enumerate(stmts):
            try:
                if not isinstance(stmt, dict):
                    raise MongoError(14, 'delete statement must be an object')
                q = stmt.get('q')
                if not isinstance(q, dict):
                    raise MongoError(40414 if q is None else 14,
                                     "BSON field 'delete.deletes.q' is missing but a required "
                                     "field" if q is None else
                                     "BSON field 'delete.deletes.q' is the wrong type '%s', "
                                     "expected type 'object'" % type_name(q))
                limit = stmt.get('limit', 0)
                if num_kind(limit) is None or int(limit) not in (0, 1):
                    raise MongoError(9, 'The limit field in delete objects must be 0 or 1. Got %s'
                                     % fmt(limit))
                with self.lock:
                    victims = self.match_docs(db, coll, q, 1 if int(limit) else None)
                    for doc in victims:
                        self.remove_doc(db, coll, doc)
                n += len(victims)
            except MongoError as exc:
                errors.append(exc.write_error(i))
                if ordered:
                    break
        return self._finish_write('delete', db, coll, {'n': n}, errors)

    def cmd_find_and_modify(self, cmd, db, conn):
        cmdname = next(iter(cmd))
        coll = check_coll_name(cmdname, db, cmd[cmdname])
        query = get_doc(cmd, 'query', cmdname, {}) or {}
        sort = get_doc(cmd, 'sort', cmdname)
        fields = get_doc(cmd, 'fields', cmdname)
        remove = get_bool(cmd, 'remove')
        update = cmd.get('update')
        new_flag = get_bool(cmd, 'new')
        upsert = get_bool(cmd, 'upsert')
        if remove and update is not None:
            raise MongoError(9, 'Cannot specify both an update and remove=true')
        if not remove and update is None:
            raise MongoError(9, 'Either an update or remove=true must be specified')
        if remove and (upsert or new_flag):
            raise MongoError(9, 'Cannot specify both upsert=true and remove=true' if upsert else
                             'Cannot specify both new=true and remove=true; \'remove\' always '
                             'returns the deleted document')
        target = None
        if sort:
            found = self.query_docs(db, coll, query, sort, {'_id': 1}, 0, 1)
            if found:
                target = self.documents(db, coll).get(store_key(found[0]['_id']))
        else:
            found = self.match_docs(db, coll, query, 1) if self.exists(db, coll) else []
            target = found[0] if found else None
        last_error = {'n': 0}
        value = None
        if remove:
            if target is not None:
                value = self.project(db, coll, target, fields)
                self.remove_doc(db, coll, target)
                last_error['n'] = 1
        else:
            if target is not None:
                # Pin the document by _id (fast path); keep the caller's query for `$`.
                q = {'_id': target['_id']}
                if query:
                    q['$and'] = [query]
                stmt = {'q': q, 'u': update, 'upsert': False,
                        'arrayFilters': cmd.get('arrayFilters')}
                _, _, _, old, new = self.update_stmt(db, coll, stmt)
                value = self.project(db, coll, new if new_flag else old, fields)
                last_error.update(n=1, updatedExisting=True)
            elif upsert:
                stmt = {'q': query, 'u': update, 'upsert': True,
                        'arrayFilters': cmd.get('arrayFilters')}
                _, _, up_id, _, new = self.update_stmt(db, coll, stmt)
                value = self.project(db, coll, new, fields) if new_flag else None
                last_error.update(n=1, updatedExisting=False, upserted=up_id)
            else:
                last_error['updatedExisting'] = False
        return {'lastErrorObject': last_error, 'value': value, 'ok': 1.0}

    # -- reads and cursors ------------------------------------------------------------------------
    def _reap_cursors(self):
        now = time.monotonic()
        dead = [cid for cid, c in self.cursors.items()
                if now - c.last_used > CURSOR_IDLE_TIMEOUT]
        for cid in dead:
            del self.cursors[cid]

    def cursor_reply(self, ns, docs, batch_size, single_batch):
        if batch_size is None:
            batch_size = DEFAULT_FIRST_BATCH
        batch, pos = take_batch(docs, 0, batch_size)
        cursor_id = 0
        if pos < len(docs) and not single_batch:
            self._reap_cursors()
            while True:
                cursor_id = random.randint(1, INT64_MAX)
                if cursor_id not in self.cursors:
                    break
            self.cursors[cursor_id] = CursorState(cursor_id, ns, docs, pos)
        return {'cursor': {'firstBatch': batch, 'id': Int64(cursor_id), 'ns': ns}, 'ok': 1.0}

    def _batch_size(self, cmd, cmdname, key='batchSize', container=None):
        src = container if container is not None else cmd
        v = src.get(key)
        if v is None:
            return None
        if num_kind(v) is None:
            raise MongoError(14, "BSON field '%s.%s' is the wrong type '%s', expected a number"
                             % (cmdname, key, type_name(v)))
        v = int(v)
        if v < 0:
            raise MongoError(51024, "BSON field 'batchSize' value must be >= 0, actual value "
                                    "'%d'" % v)
        return v

    def cmd_find(self, cmd, db, conn):
        coll = check_coll_name('find', db, cmd['find'])
        flt = get_doc(cmd, 'filter', 'find', {}) or {}
        sort = get_doc(cmd, 'sort', 'find')
        projection = get_doc(cmd, 'projection', 'find')
        skip = get_nonneg_int(cmd, 'skip', 'find', 0)
        limit = get_nonneg_int(cmd, 'limit', 'find', 0)
        single = get_bool(cmd, 'singleBatch')
        batch_size = self._batch_size(cmd, 'find')
        if skip < 0:
            raise MongoError(51024, "BSON field 'skip' value must be >= 0, actual value '%d'"
                             % skip)
        if limit < 0:
            limit, single = -limit, True
        if get_bool(cmd, 'tailable') or get_bool(cmd, 'awaitData'):
            raise not_supported('tailable cursors')
        if cmd.get('min') is not None or cmd.get('max') is not None:
            raise not_supported('find with min/max')
        docs = self.query_docs(db, coll, flt, sort, projection, skip, limit)
        if limit and single and batch_size is None:
            batch_size = limit
        return self.cursor_reply('%s.%s' % (db, coll), docs, batch_size, single)

    def cmd_get_more(self, cmd, db, conn):
        cursor_id = cmd['getMore']
        if num_kind(cursor_id) not in ('int', 'long'):
            raise MongoError(14, "BSON field 'getMore.getMore' is the wrong type '%s', expected "
                                 "type 'long'" % type_name(cursor_id))
        coll = check_coll_name('getMore', db, cmd.get('collection'))
        batch_size = self._batch_size(cmd, 'getMore')
        if batch_size == 0:
            batch_size = None
        cur = self.cursors.get(int(cursor_id))
        if cur is None:
            raise MongoError(43, 'cursor id %d not found' % int(cursor_id))
        ns = '%s.%s' % (db, coll)
        if cur.ns != ns:
            raise MongoError(13, "Requested getMore on namespace '%s', but cursor belongs to a "
                                 "different namespace %s" % (ns, cur.ns))
        batch, cur.pos = take_batch(cur.docs, cur.pos, batch_size)
        cur.last_used = time.monotonic()
        cid = cur.cursor_id
        if cur.pos >= len(cur.docs):
            del self.cursors[cid]
            cid = 0
        return {'cursor': {'nextBatch': batch, 'id': Int64(cid), 'ns': ns}, 'ok': 1.0}

    def cmd_kill_cursors(self, cmd, db, conn):
        coll = check_coll_name('killCursors', db, cmd['killCursors'])
        ids = cmd.get('cursors')
        if not isinstance(ids, list):
            raise MongoError(14, "BSON field 'killCursors.cursors' is the wrong type '%s', "
                                 "expected type 'array'" % type_name(ids))
        killed, not_found = [], []
        ns = '%s.%s' % (db, coll)
        for cid in ids:
            cur = self.cursors.get(int(cid))
            if cur is not None and cur.ns == ns:
                del self.cursors[int(cid)]
                killed.append(Int64(cid))
            else:
                not_found.append(Int64(cid))
        return {'cursorsKilled': killed, 'cursorsNotFound': not_found, 'cursorsAlive': [],
                'cursorsUnknown': [], 'ok': 1.0}

    def cmd_count(self, cmd, db, conn):
        coll = check_coll_name('count', db, cmd['count'])
        query = get_doc(cmd, 'query', 'count', {}) or {}
        skip = get_nonneg_int(cmd, 'skip', 'count', 0)
        limit = abs(get_nonneg_int(cmd, 'limit', 'count', 0))
        if skip < 0:
            raise MongoError(2, 'skip value is negative in count query')
        if self.exists(db, coll):
            n = len(self.match_docs(db, coll, query)) if query else len(self.documents(db, coll))
        else:
            n = 0
        n = max(0, n - skip)
        if limit:
            n = min(n, limit)
        return {'n': n, 'ok': 1.0}

    def cmd_distinct(self, cmd, db, conn):
        coll = check_coll_name('distinct', db, cmd['distinct'])
        key = cmd.get('key')
        if not isinstance(key, str):
            raise MongoError(14, "BSON field 'distinct.key' is the wrong type '%s', expected "
                                 "type 'string'" % type_name(key))
        query = get_doc(cmd, 'query', 'distinct', {}) or {}
        values = []
        if self.exists(db, coll):
            values = self.mm_coll(db, coll).distinct(key, query)
        values.sort(key=functools.cmp_to_key(bson_cmp))
        return {'values': values, 'ok': 1.0}

    def cmd_aggregate(self, cmd, db, conn):
        target = cmd['aggregate']
        pipeline = cmd.get('pipeline')
        if not isinstance(pipeline, list):
            raise MongoError(14, "BSON field 'aggregate.pipeline' is the wrong type '%s', "
                                 "expected type 'array'" % type_name(pipeline))
        if get_bool(cmd, 'explain'):
            raise not_supported('aggregate explain')
        if 'cursor' not in cmd:
            raise MongoError(9, "The 'cursor' option is required, except for aggregate with the "
                                "explain argument")
        cursor_opts = get_doc(cmd, 'cursor', 'aggregate', {}) or {}
        batch_size = self._batch_size(cmd, 'aggregate', container=cursor_opts)
        if not isinstance(target, str):
            raise not_supported('database-level aggregate ({aggregate: 1})')
        coll = check_coll_name('aggregate', db, target)
        for stage in pipeline:
            if not isinstance(stage, dict) or len(stage) != 1:
                raise MongoError(40323, 'A pipeline stage specification object must contain '
                                        'exactly one field.')
        stages = list(pipeline)
        if self.exists(db, coll):
            mm = self.mm_coll(db, coll)
            if stages and '$match' in stages[0]:
                in_docs = list(mm.find(stages.pop(0)['$match']))
            else:
                in_docs = list(mm.find())
        else:
            in_docs = []
        mm = self.mm_coll(db, coll)
        try:
            out = list(mm_aggregate.process_pipeline(in_docs, mm.database, stages, None))
        except mongomock.OperationFailure as exc:
            raise MongoError(getattr(exc, 'code', None) or 2, str(exc)) from exc
        return self.cursor_reply('%s.%s' % (db, coll), out, batch_size, False)

    # -- catalogue --------------------------------------------------------------------------------
    def cmd_create(self, cmd, db, conn):
        coll = check_coll_name('create', db, cmd['create'])
        if self.exists(db, coll):
            raise MongoError(48, 'Collection %s.%s already exists.' % (db, coll))
        if get_bool(cmd, 'capped'):
            log('create %s.%s: capped collections are created as normal collections' % (db, coll))
        validator = self._validator(cmd, 'create')
        self.cstore(db, coll).create()
        self.meta_of(db, coll).validator = validator
        return {'ok': 1.0}

    @staticmethod
    def _validator(cmd, cmdname):
        """A query-document validator; $jsonSchema and $expr are not supported (238)."""
        v = get_doc(cmd, 'validator', cmdname, {})
        if any(k in ('$jsonSchema', '$expr') for k in v):
            raise not_supported('validator with %s' % ', '.join(sorted(v)))
        if cmd.get('validationLevel', 'strict') != 'strict' or \
                cmd.get('validationAction', 'error') != 'error':
            raise not_supported('validationLevel/validationAction other than strict/error')
        return v or None

    def cmd_coll_mod(self, cmd, db, conn):
        coll = check_coll_name('collMod', db, cmd['collMod'])
        if not self.exists(db, coll):
            raise MongoError(26, 'ns does not exist: %s.%s' % (db, coll))
        for k in cmd:
            if k not in ('collMod', 'validator', 'validationLevel', 'validationAction') and \
                    not k.startswith('$') and k not in ('lsid', 'writeConcern', 'comment'):
                raise not_supported('collMod option %r' % k)
        if 'validator' in cmd:
            self.meta_of(db, coll).validator = self._validator(cmd, 'collMod')
        return {'ok': 1.0}

    def cmd_drop(self, cmd, db, conn):
        coll = check_coll_name('drop', db, cmd['drop'])
        if not self.exists(db, coll):
            raise MongoError(26, 'ns not found')
        n_indexes = len(self.meta_of(db, coll).indexes)
        self.drop_coll(db, coll)
        ns = '%s.%s' % (db, coll)
        for cid in [cid for cid, c in self.cursors.items() if c.ns == ns]:
            del self.cursors[cid]
        return {'ns': ns, 'nIndexesWas': n_indexes, 'ok': 1.0}

    def cmd_drop_database(self, cmd, db, conn):
        dbs = self.store[db]
        for coll in list(dbs._collections):  # pylint: disable=protected-access
            if dbs[coll].is_created:
                self.drop_coll(db, coll)
        for key in [k for k in self.meta if k[0] == db]:
            del self.meta[key]
        return {'dropped': db, 'ok': 1.0}

    def cmd_list_collections(self, cmd, db, conn):
        flt = get_doc(cmd, 'filter', 'listCollections', {}) or {}
        name_only = get_bool(cmd, 'nameOnly')
        cursor_opts = get_doc(cmd, 'cursor', 'listCollections', {}) or {}
        batch_size = self._batch_size(cmd, 'listCollections', container=cursor_opts)
        out = []
        for name in sorted(self.store[db].list_created_collection_names()):
            if name_only:
                info = {'name': name, 'type': 'collection'}
            else:
                info = {'name': name, 'type': 'collection', 'options': {},
                        'info': {'readOnly': False},
                        'idIndex': {'v': 2, 'key': {'_id': 1}, 'name': '_id_'}}
            if not flt or filter_applies(flt, info):
                out.append(info)
        return self.cursor_reply('%s.$cmd.listCollections' % db, out, batch_size, False)

    def cmd_list_databases(self, cmd, db, conn):
        if db != 'admin':
            raise MongoError(13, 'listDatabases may only be run against the admin database.')
        flt = get_doc(cmd, 'filter', 'listDatabases', {}) or {}
        name_only = get_bool(cmd, 'nameOnly')
        out = []
        total = 0
        for name in sorted(self.store.list_created_database_names()):
            dbs = self.store[name]
            size = 0
            for cname in dbs.list_created_collection_names():
                size += 4096 + 64 * len(dbs[cname]._documents)  # pylint: disable=protected-access
            info = {'name': name} if name_only else {
                'name': name, 'sizeOnDisk': float(size), 'empty': size == 0}
            if not flt or filter_applies(flt, info):
                out.append(info)
                total += size
        reply = {'databases': out, 'ok': 1.0}
        if not name_only:
            reply['totalSize'] = float(total)
            reply['totalSizeMb'] = Int64(total // (1024 * 1024))
        return reply

    def cmd_rename_collection(self, cmd, db, conn):
        if db != 'admin':
            raise MongoError(13, 'renameCollection may only be run against the admin database.')
        src, dst = cmd.get('renameCollection'), cmd.get('to')
        if not isinstance(src, str) or not isinstance(dst, str) or '.' not in src \
                or '.' not in dst:
            raise MongoError(73, 'Invalid namespace specified')
        sdb, scoll = src.split('.', 1)
        ddb, dcoll = dst.split('.', 1)
        if sdb != ddb:
            raise not_supported('renameCollection across databases')
        check_coll_name('renameCollection', ddb, dcoll)
        if not self.exists(sdb, scoll):
            raise MongoError(26, 'Source collection %s does not exist' % src)
        if self.exists(ddb, dcoll):
            if not get_bool(cmd, 'dropTarget'):
                raise MongoError(48, 'target namespace exists')
            self.drop_coll(ddb, dcoll)
        self.store[sdb]._collections.pop(dcoll, None)  # pylint: disable=protected-access
        self.store[sdb].rename(scoll, dcoll)
        self.meta[(ddb, dcoll)] = self.meta.pop((sdb, scoll), CollMeta())
        self._mm_colls.pop((sdb, scoll), None)
        self._mm_colls.pop((ddb, dcoll), None)
        return {'ok': 1.0}

    def cmd_create_indexes(self, cmd, db, conn):
        coll = check_coll_name('createIndexes', db, cmd['createIndexes'])
        specs = cmd.get('indexes')
        if not isinstance(specs, list) or not specs:
            raise MongoError(2, 'Must specify at least one index to create')
        created_coll = not self.exists(db, coll)
        meta = self.meta_of(db, coll)
        before = len(meta.indexes)
        new_specs = []
        for spec in specs:
            if not isinstance(spec, dict):
                raise MongoError(14, 'index specification must be an object')
            key = spec.get('key')
            name = spec.get('name')
            if not isinstance(key, dict) or not key:
                raise MongoError(9, "Error in specification %s :: caused by :: The 'key' field "
                                    "must be a non-empty object" % fmt(spec))
            if not isinstance(name, str) or not name:
                raise MongoError(9, "Error in specification %s :: caused by :: The 'name' field "
                                    "is a required property of an index specification"
                                 % fmt(spec))
            for k, v in key.items():
                if not (num_kind(v) is not None and v != 0) and v not in (
                        'text', '2d', '2dsphere', 'hashed'):
                    raise MongoError(67, "Error in specification %s :: caused by :: Values in "
                                         "the index key pattern can only be numbers or strings"
                                     % fmt(spec))
            doc = {'v': 2, 'key': key, 'name': name}
            for k, v in spec.items():
                if k not in ('key', 'name', 'v', 'ns'):
                    doc[k] = v
            existing = meta.indexes.get(name)
            if existing is not None:
                if bson.encode(existing['key']) != bson.encode(key):
                    raise MongoError(86, "An existing index has the same name as the requested "
                                         "index. When index names are not specified, they are "
                                         "auto generated and can cause conflicts. Please refer "
                                         "to our documentation. Requested index: %s, existing "
                                         "index: %s" % (fmt(doc), fmt(existing)))
                if bool(existing.get('unique')) != bool(spec.get('unique')):
                    raise MongoError(85, 'An existing index has the same name as the requested '
                                         'index but different options. Requested index: %s, '
                                         'existing index: %s' % (fmt(doc), fmt(existing)))
                continue
            for other in meta.indexes.values():
                if bson.encode(other['key']) == bson.encode(key) and \
                        bool(other.get('unique')) == bool(spec.get('unique')):
                    raise MongoError(85, 'Index already exists with a different name: %s'
                                     % other['name'])
            new_specs.append(doc)
        built = []
        for doc in new_specs:
            if doc.get('unique'):
                ui = UniqueIndex(doc['name'], list(doc['key']), bool(doc.get('sparse')),
                                 doc.get('partialFilterExpression'))
                ns = '%s.%s' % (db, coll)
                for d in self.documents(db, coll).values():
                    k = ui.key_of(d)
                    if k is None:
                        continue
                    if k in ui.entries:
                        raise ui.dup_error(ns, d)
                    ui.entries[k] = store_key(d['_id'])
                built.append((doc, ui))
            else:
                built.append((doc, None))
        for doc, ui in built:
            meta.indexes[doc['name']] = doc
            if ui is not None:
                meta.uniques[doc['name']] = ui
        self.cstore(db, coll).create()
        reply = {'numIndexesBefore': before, 'numIndexesAfter': len(meta.indexes),
                 'createdCollectionAutomatically': created_coll, 'ok': 1.0}
        if not new_specs:
            reply['note'] = 'all indexes already exist'
        return reply

    def cmd_list_indexes(self, cmd, db, conn):
        coll = check_coll_name('listIndexes', db, cmd['listIndexes'])
        if not self.exists(db, coll):
            raise MongoError(26, 'ns does not exist: %s.%s' % (db, coll))
        cursor_opts = get_doc(cmd, 'cursor', 'listIndexes', {}) or {}
        batch_size = self._batch_size(cmd, 'listIndexes', container=cursor_opts)
        out = [dict(ix) for ix in self.meta_of(db, coll).indexes.values()]
        return self.cursor_reply('%s.%s' % (db, coll), out, batch_size, False)

    def cmd_drop_indexes(self, cmd, db, conn):
        cmdname = next(iter(cmd))
        coll = check_coll_name(cmdname, db, cmd[cmdname])
        if not self.exists(db, coll):
            raise MongoError(26, 'ns not found %s.%s' % (db, coll))
        meta = self.meta_of(db, coll)
        before = len(meta.indexes)
        which = cmd.get('index')
        if which == '*':
            names = [n for n in meta.indexes if n != '_id_']
        elif isinstance(which, str):
            names = [which]
        elif isinstance(which, list):
            names = list(which)
        elif isinstance(which, dict):
            enc = bson.encode(which)
            names = [n for n, ix in meta.indexes.items() if bson.encode(ix['key']) == enc]
            if not names:
                raise MongoError(27, "can't find index with key: %s" % fmt(which))
        else:
            raise MongoError(14, "BSON field 'dropIndexes.index' is the wrong type")
        for name in names:
            if name == '_id_':
                raise MongoError(72, 'cannot drop _id index')
            if name not in meta.indexes:
                raise MongoError(27, 'index not found with name [%s]' % name)
        for name in names:
            del meta.indexes[name]
            meta.uniques.pop(name, None)
        return {'nIndexesWas': before, 'ok': 1.0}


def fmt_ns(db, cmd):
    try:
        target = next(iter(cmd.values()))
    except StopIteration:
        target = None
    if isinstance(target, str):
        return '%s.%s' % (db, target)
    return db


# ---------------------------------------------------------------------------------------------
# Wire server (mockupdb does the message parsing and reply encoding)
# ---------------------------------------------------------------------------------------------
class ConnectionClosed(Exception):
    pass


class ConnInfo(object):
    __slots__ = ('conn_id', 'addr')

    def __init__(self, conn_id, addr):
        self.conn_id = conn_id
        self.addr = addr


def recv_exact(sock, length):
    try:
        return mockupdb.mock_server_receive(sock, length)
    except (socket.error, OSError) as exc:
        raise ConnectionClosed(str(exc)) from exc


class StandinServer(mockupdb.MockupDB):
    """mockupdb's server with its own accept/serve loops.

    mockupdb's _server_loop holds one global lock while a request is handled, builds a repr()
    of every request and reply, and lets any exception kill the connection; this class keeps
    mockupdb's message classes (OpMsg with kind-0/kind-1 sections, Command/OpQuery, OpMsgReply,
    OpReply) but dispatches to the Engine, one thread per connection."""

    def __init__(self, host, port, engine):
        mockupdb.MockupDB.__init__(self, port=port, verbose=False, request_timeout=10)
        self._address = (host, port)
        self.engine = engine
        self._conn_ids = itertools.count(1)
        self._conn_lock = threading.Lock()
        self._open_socks = set()
        self._threads = []

    # mockupdb.run() binds the socket and starts this loop in a thread.
    def _accept_loop(self):
        ls = self._listening_sock
        ls.setblocking(False)
        while not self._stopped:
            try:
                ready, _, _ = select.select([ls], [], [], 0.2)
            except (OSError, ValueError):
                break
            if not ready:
                continue
            try:
                client, addr = ls.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                if self._stopped:
                    break
                log('accept failed: %s' % exc)
                time.sleep(0.1)
                continue
            client.setblocking(True)
            try:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            conn = ConnInfo(next(self._conn_ids), addr)
            with self._conn_lock:
                self._open_socks.add(client)
                self.engine.connections += 1
                self.engine.total_connections += 1
            t = threading.Thread(target=self._serve, args=(client, conn),
                                 name='conn-%d' % conn.conn_id, daemon=True)
            t.start()

    def _read_request(self, sock):
        header = recv_exact(sock, 16)
        length, request_id, _, opcode = struct.unpack('<iiii', header)
        if length < 16 or length > MAX_MESSAGE_SIZE + 64 * 1024:
            log('closing connection: invalid message length %d' % length)
            raise ConnectionClosed('bad length')
        body = recv_exact(sock, length - 16)
        cls = mockupdb.OPCODES.get(opcode)
        if cls is None:
            log('closing connection: unsupported opcode %d (OP_COMPRESSED and other opcodes '
                'are not implemented)' % opcode)
            raise ConnectionClosed('bad opcode')
        # Decoding a 48 MB bulk message allocates millions of objects; the cyclic GC would
        # rescan them over and over (3-4x slower).  BSON documents cannot form cycles.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return cls.unpack(body, sock, self, request_id)
        except Exception as exc:  # pylint: disable=broad-except
            log('closing connection: cannot parse opcode %d message: %r' % (opcode, exc))
            raise ConnectionClosed('parse error') from exc
        finally:
            if gc_was_enabled:
                gc.enable()

    def _serve(self, sock, conn):
        try:
            while not self._stopped:
                req = self._read_request(sock)
                self._dispatch(req, sock, conn)
        except ConnectionClosed:
            pass
        except OSError as exc:
            if not self._stopped and exc.errno not in (errno.ECONNRESET, errno.EPIPE,
                                                       errno.EBADF, errno.ENOTCONN):
                log('connection %d: socket error: %s' % (conn.conn_id, exc))
        except Exception:  # pylint: disable=broad-except
            log('connection %d: unexpected error:\n%s' % (conn.conn_id, traceback.format_exc()))
        finally:
            with self._conn_lock:
                self._open_socks.discard(sock)
                self.engine.connections -= 1
            try:
                sock.close()
            except OSError:
                pass

    def _dispatch(self, req, sock, conn):
        if isinstance(req, mockupdb.OpMsg):
            reply = self.engine.run_command(req.doc, req.namespace, conn)
            if req.flags & mockupdb.OP_MSG_FLAGS['moreToCome']:
                return  # unacknowledged write (w:0): no reply
            data = self._encode(mockupdb.OpMsgReply, reply, req)
        elif isinstance(req, mockupdb.Command):
            doc = req.doc
            if '$query' in doc and isinstance(doc['$query'], dict):
                doc = doc['$query']
            data = self._encode(mockupdb.OpReply,
                                self.engine.run_command(doc, req.namespace, conn), req)
        elif isinstance(req, mockupdb.OpQuery):
            log('legacy OP_QUERY on %s is not supported' % req.namespace)
            data = mockupdb.OpReply(
                {'$err': 'Unsupported OP_QUERY command: legacy find. The client driver may '
                         'require an upgrade.', 'code': 5739101, 'ok': 0.0},
                flags=mockupdb.REPLY_FLAGS['QueryFailure']).reply_bytes(req)
        elif isinstance(req, mockupdb.OpGetMore):
            log('legacy OP_GET_MORE is not supported')
            data = mockupdb.OpReply(flags=mockupdb.REPLY_FLAGS['CursorNotFound']).reply_bytes(req)
        else:
            log('legacy %s is not supported (ignored, no reply)' % type(req).__name__)
            return
        sock.sendall(data)

    def _encode(self, reply_cls, reply, req):
        try:
            return reply_cls(reply).reply_bytes(req)
        except Exception as exc:  # pylint: disable=broad-except
            log('cannot encode reply: %r' % exc)
            err = MongoError(1, 'stand-in could not encode the reply: %r' % exc).reply()
            return reply_cls(err).reply_bytes(req)

    def shutdown(self):
        self._stopped = True
        accept = getattr(self, '_accept_thread', None)
        if accept is not None:
            accept.join(2)
        try:
            self._listening_sock.close()
        except OSError:
            pass
        with self._conn_lock:
            socks = list(self._open_socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def write_ready_file(path, port):
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, '.%s.%d.tmp' % (os.path.basename(path), os.getpid()))
    with open(tmp, 'w') as f:
        f.write('%d\n' % port)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None):
    global _VERBOSE  # pylint: disable=global-statement
    parser = argparse.ArgumentParser(description='MongoDB wire-protocol stand-in for walfold')
    parser.add_argument('--port', type=int, required=True, help='TCP port, 0 = any free port')
    parser.add_argument('--host', default='127.0.0.1', help='address to bind (IPv4)')
    parser.add_argument('--ready-file', help='write the port number here once listening')
    parser.add_argument('--verbose', action='store_true',
                        help='also log every command (name, namespace, duration) to stderr')
    args = parser.parse_args(argv)
    _VERBOSE = args.verbose

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # The store holds millions of long-lived objects; collect young generations less often.
    gc.set_threshold(20000, 20, 20)
    engine = Engine()
    server = StandinServer(args.host, args.port, engine)
    try:
        port = server.run()
    except OSError as exc:
        log('cannot listen on %s:%d: %s' % (args.host, args.port, exc))
        return 1
    if args.ready_file:
        write_ready_file(args.ready_file, port)
    sys.stdout.write('listening on %s:%d\n' % (args.host, port))
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    log('signal received, shutting down')
    server.shutdown()
    return 0


if __name__ == '__main__':
    _rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Connection threads are daemons that may still be inside a request; skip interpreter
    # finalization so they cannot trip over it.
    os._exit(_rc)  # pylint: disable=protected-access
