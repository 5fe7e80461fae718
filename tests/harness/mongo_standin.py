#!/usr/bin/python3
"""MongoDB wire-protocol stand-in for walfold's tests, cut to the surface walfold uses.

Debian ships no MongoDB server, so the tests talk to this process instead.  The wire protocol
(OP_MSG with kind-0 and kind-1 sections, the legacy OP_QUERY handshake) comes from
python3-mockupdb; everything else is here, and only what walfold and its tests send:

* commands: hello/isMaster, ping, buildInfo, endSessions, insert, update, delete, find,
  getMore, killCursors, createIndexes (catalogue only), collMod (query validators),
  dropDatabase.  Other MongoDB commands answer code 115 CommandNotSupported; names MongoDB
  does not know answer code 59 CommandNotFound, as mongod does;
* update operators $set $setOnInsert $unset $inc $max $push($each/$sort/$slice) $addToSet
  $pull(by value), with MongoDB's number type rules (int32/int64/double/Decimal128);
* query operators $eq $ne $gt $gte $lt $lte $in $nin $exists $not $and $or $nor on scalar and
  sub-document paths, with BSON type bracketing and order-sensitive document equality;
* a lock around the store, so several connections can be served at once.

Anything MongoDB has and the stand-in does not is refused with code 115 (never emulated
silently).  tests/contract/ runs the same requests against this and a real MongoDB.

Usage:  mongo_standin.py --port N [--host 127.0.0.1] [--ready-file PATH] [--verbose]

Port 0 picks a free port.  Once listening, the port number is written (atomically) to the ready
file and "listening on HOST:PORT" is printed to stdout.  SIGTERM / SIGINT stop the server and the
process exits 0.  Errors (unknown commands, failed commands, internal exceptions) are logged to
stderr together with the command name.

Always run it with /usr/bin/python3 (Debian's interpreter that has mockupdb and pymongo's bson).
"""

import argparse
import bisect
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
except ImportError as _exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        'mongo_standin: cannot import %s (%s); run me with /usr/bin/python3 and install '
        'python3-mockupdb python3-pymongo\n' % (_exc.name, _exc))
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


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
CODE_NAMES = {
    1: 'InternalError', 2: 'BadValue', 9: 'FailedToParse', 13: 'Unauthorized',
    14: 'TypeMismatch', 16: 'InvalidLength', 26: 'NamespaceNotFound',
    28: 'PathNotViable', 40: 'ConflictingUpdateOperators', 43: 'CursorNotFound',
    52: 'DollarPrefixedFieldName', 54: 'NotSingleValueField', 56: 'EmptyFieldName',
    59: 'CommandNotFound', 66: 'ImmutableField', 67: 'CannotCreateIndex', 73: 'InvalidNamespace',
    85: 'IndexOptionsConflict', 86: 'IndexKeySpecsConflict', 115: 'CommandNotSupported',
    121: 'DocumentValidationFailure', 11000: 'DuplicateKey', 17419: 'Location17419',
    31253: 'Location31253', 31254: 'Location31254', 51024: 'Location51024',
}

# MongoDB commands the stand-in does not implement: they answer 115 CommandNotSupported (the
# command exists, this server does not offer it).  Any other unknown name answers 59
# CommandNotFound, "no such command", as mongod does.  Not exhaustive: the commonly used ones.
KNOWN_UNSUPPORTED_COMMANDS = frozenset('''
    aggregate count distinct findAndModify findandmodify mapReduce bulkWrite
    create drop renameCollection listCollections listDatabases listIndexes dropIndexes
    deleteIndexes reIndex collStats dbStats dataSize validate compact convertToCapped
    cloneCollectionAsCapped explain serverStatus hostInfo getLog getParameter setParameter
    currentOp killOp killAllSessions killSessions startSession refreshSessions commitTransaction
    abortTransaction saslStart saslContinue authenticate logout createUser dropUser usersInfo
    createRole dropRole rolesInfo replSetGetStatus replSetInitiate getCmdLineOpts
    connectionStatus whatsmyuri getLastError resetError fsync shutdown profile
    listCommands top lockInfo getDefaultRWConcern setDefaultRWConcern
'''.split())


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
    """MongoDB offers `what`, the stand-in does not: code 115 CommandNotSupported."""
    return MongoError(115, '%s is not supported by the walfold MongoDB stand-in' % what)


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
    if v is None or v is MISSING:
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
        return hkey(_id)
    return _id


# ---------------------------------------------------------------------------------------------
# Patches: Decimal128 semantics, mockupdb receive path
# ---------------------------------------------------------------------------------------------
def _patch_decimal128():
    """Give bson's Decimal128 MongoDB's numeric semantics inside this process.

    MongoDB compares Decimal128 numerically with every other number type (1.50 == 1.5 == 1.5e0
    == NumberInt-free double 1.5); Python's Decimal128 has no order at all, so teach it
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
        self._int_ids = None    # sorted int/Int64 keys, once an _id range was asked for
        self._other_ids = None  # {key: None}: every other key (always a range candidate)
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
            if self._int_ids is not None:
                if type(key) in _INT_KEY_TYPES:
                    bisect.insort(self._int_ids, key)  # ascending _ids append at the end
                else:
                    self._other_ids[key] = None
        super().__setitem__(key, doc)
        self._index_add(key, doc)

    def __delitem__(self, key):
        doc = super().__getitem__(key)
        super().__delitem__(key)
        self._index_remove(key, doc)
        del self._seq[key]
        if self._int_ids is not None:
            if type(key) in _INT_KEY_TYPES:
                ids = self._int_ids
                del ids[bisect.bisect_left(ids, key)]
            else:
                del self._other_ids[key]

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
        self._int_ids = self._other_ids = None

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

    def id_range_candidates(self, lo, lo_incl, hi, hi_incl):
        """Documents whose _id may lie in the integer range (None: unbounded), in natural order:
        the int/Int64 _ids inside it and every document with another _id type (doubles,
        decimals, strings...: the matcher decides, with type bracketing). A poll for what is
        new ({_id: {$gt: last}}) reads the new documents instead of scanning the collection."""
        if self._int_ids is None:
            ints, other = [], {}
            for key in self:
                if type(key) in _INT_KEY_TYPES:
                    ints.append(key)
                else:
                    other[key] = None
            ints.sort()
            self._int_ids, self._other_ids = ints, other
        ids = self._int_ids
        start = 0 if lo is None else (bisect.bisect_left(ids, lo) if lo_incl
                                      else bisect.bisect_right(ids, lo))
        end = len(ids) if hi is None else (bisect.bisect_right(ids, hi) if hi_incl
                                           else bisect.bisect_left(ids, hi))
        keys = ids[start:end]
        keys.extend(self._other_ids)
        if len(keys) > 1:
            keys.sort(key=self._seq.__getitem__)
        get = super().__getitem__
        return [get(k) for k in keys]


# Store keys kept in IndexedDocs' sorted _id index (bool is an int in Python, not in BSON).
_INT_KEY_TYPES = frozenset([int, Int64])


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
            elif all(k in _RANGE_PREDICATES and type(x) in _INT_KEY_TYPES
                     for k, x in v.items()) and hasattr(documents, 'id_range_candidates'):
                return _id_range(documents, v)
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


def _id_range(documents, cond):
    """Candidates for {_id: {$gt/$gte/$lt/$lte: <integer>, ...}} from the sorted _id index."""
    lo = hi = None
    lo_incl = hi_incl = True
    for op, x in cond.items():
        if op in ('$gt', '$gte'):
            if lo is None or x > lo or (x == lo and op == '$gt'):
                lo, lo_incl = x, op == '$gte'
        elif hi is None or x < hi or (x == hi and op == '$lt'):
            hi, hi_incl = x, op == '$lte'
    return documents.id_range_candidates(lo, lo_incl, hi, hi_incl)


class _Fallback(Exception):
    """The fast $push $sort path cannot order these values; use the general comparison."""


_FALLBACK = _Fallback()
_SIMPLE_TYPES = frozenset([type(None), bool, int, Int64, float, Decimal128, str,
                           datetime.datetime, ObjectId, Timestamp, dict])
_RANGE_PREDICATES = {'$gt': lambda c: c > 0, '$gte': lambda c: c >= 0,
                     '$lt': lambda c: c < 0, '$lte': lambda c: c <= 0}
# Query operators MongoDB has and the stand-in does not evaluate (walfold sends none): 115.
# Anything else starting with '$' is unknown to MongoDB too: 2 BadValue "unknown operator".
_UNSUPPORTED_QUERY_OPS = frozenset([
    '$regex', '$options', '$elemMatch', '$size', '$all', '$type', '$mod', '$bitsAllSet',
    '$bitsAnySet', '$bitsAllClear', '$bitsAnyClear', '$geoWithin', '$geoIntersects', '$near',
    '$nearSphere', '$jsonSchema', '$expr', '$where', '$text', '$sampleRate'])


def _operand(v):
    """A comparison operand the matcher evaluates: scalars and embedded documents."""
    t = type(v)
    if t not in _SIMPLE_TYPES:
        raise not_supported('a query on a value of type %s' % type_name(v))
    if t is float and v != v or t is Decimal128 and (v.bid[15] & 0x7c) == 0x7c:
        raise not_supported('a query comparing with NaN')
    return v


def _path_value(doc, key):
    """Value at a dotted path through sub-documents.  MongoDB matches array fields by element;
    walfold never queries an array, so an array on the path is refused (115), not guessed."""
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
                raise not_supported("a query through the array at '%s'" % key)
            else:
                return MISSING
    t = type(v)
    if t is list:
        raise not_supported("a query on the array field '%s'" % key)
    if t is float and v != v or t is Decimal128 and (v.bid[15] & 0x7c) == 0x7c:
        raise not_supported("a query on the NaN in '%s'" % key)
    return v


def _eq(v, operand):
    """MongoDB equality: numbers compare across types, documents field by field in order
    (https://www.mongodb.com/docs/manual/tutorial/query-embedded-documents/: "equality matches
    on the whole embedded document require an exact match ... including the field order")."""
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


def _unknown_operator(op):
    if op in _UNSUPPORTED_QUERY_OPS:
        return not_supported('the query operator %s' % op)
    return MongoError(2, 'unknown operator: %s' % op)


def _match_ops(v, cond):
    for op, arg in cond.items():
        if op == '$eq':
            ok = _eq(v, _operand(arg))
        elif op in _RANGE_PREDICATES:
            if arg is None:
                # {$gte: null} / {$lte: null} match null and missing; $gt / $lt never match.
                ok = op in ('$gte', '$lte') and (v is MISSING or v is None)
                if not ok:
                    return False
                continue
            _operand(arg)
            # Type bracketing: a comparison only matches values of the operand's BSON type
            # class (all numbers are one class).
            ok = (v is not MISSING and type_rank(v) == type_rank(arg)
                  and _RANGE_PREDICATES[op](bson_cmp(v, arg)))
        elif op == '$ne':
            ok = not _eq(v, _operand(arg))
        elif op == '$in' or op == '$nin':
            if type(arg) is not list:
                raise MongoError(2, '%s needs an array' % op)
            members = _in_set(arg) if type(v) in _ID_FAST_TYPES else None
            if members is not None:
                hit = v in members
            else:
                hit = False
                for a in arg:
                    if _eq(v, _operand(a)):
                        hit = True
                        break
            ok = hit if op == '$in' else not hit
        elif op == '$exists':
            ok = (v is not MISSING) == bool(arg)
        elif op == '$not':
            if type(arg) is not dict or not arg:
                raise MongoError(2, '$not needs a document' if type(arg) is not dict
                                 else '$not cannot be empty')
            for k in arg:
                if k[:1] != '$':
                    raise not_supported('$not with a regular expression or document')
            ok = not _match_ops(v, arg)
        else:
            raise _unknown_operator(op)
        if not ok:
            return False
    return True


def filter_applies(flt, doc):
    """Does `doc` match the query `flt`?  Raises MongoError for what MongoDB refuses (2, 9)
    and for what the stand-in does not evaluate (115)."""
    for key, cond in flt.items():
        if key[:1] == '$':
            if key in ('$and', '$or', '$nor'):
                if type(cond) is not list or not cond:
                    raise MongoError(2, '%s argument must be a non-empty array' % key)
                for c in cond:
                    if type(c) is not dict:
                        raise MongoError(2, '%s argument\'s entries must be objects' % key)
                if key == '$and':
                    ok = all(filter_applies(c, doc) for c in cond)
                elif key == '$or':
                    ok = any(filter_applies(c, doc) for c in cond)
                else:
                    ok = not any(filter_applies(c, doc) for c in cond)
                if not ok:
                    return False
                continue
            if key == '$comment':
                continue
            if key in _UNSUPPORTED_QUERY_OPS:
                raise not_supported('the query operator %s' % key)
            raise MongoError(2, 'unknown top level operator: %s' % key)
        v = _path_value(doc, key)
        if type(cond) is dict and cond and next(iter(cond))[:1] == '$':
            if not _match_ops(v, cond):
                return False
        elif not _eq(v, _operand(cond)):
            return False
    return True


def is_operator_doc(v):
    return isinstance(v, dict) and bool(v) and all(
        isinstance(k, str) and k.startswith('$') for k in v)


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
        r = D128_CTX.add(da, db)
        return fast_decimal128(r)
    if ka == 'double' or kb == 'double':
        return float(a) + float(b)
    r = int(a) + int(b)
    if ka == 'int' and kb == 'int' and INT32_MIN <= r <= INT32_MAX:
        return r
    if INT64_MIN <= r <= INT64_MAX:
        return Int64(r)
    raise MongoError(2, 'Failed to apply %s operations to current value (%s) for document '
                        '{_id: %s}' % (what, fmt(a), fmt(ctx.doc_id)))


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
    __slots__ = ('is_insert', 'doc_id')

    def __init__(self):
        self.is_insert = False
        self.doc_id = None

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
            cset(c, k, value)  # $inc on a missing field sets it to the increment
            return
        if num_kind(old) is None:
            raise MongoError(14, "Cannot apply %s to a value of non-numeric type. {_id: %s} has "
                                 "the field '%s' of non-numeric type %s" % (
                                     what, fmt(ctx.doc_id), parts[-1], type_name(old)))
        cset(c, k, num_arith(op, old, value, what, ctx))
    return apply


op_inc = _op_arith('add', '$inc')


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
            if key == '$position':
                raise not_supported('$push with $position')
            if key not in ('$each', '$slice', '$sort'):
                raise MongoError(2, 'Unrecognized clause in $push: %s' % key)
        each = value['$each']
        if not isinstance(each, list):
            raise MongoError(2, 'The argument to $each in $push must be an array but it was of '
                                'type: %s' % type_name(each))
        arr.extend(each)
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
        raise not_supported('$addToSet with $each')
    if not any(bson_eq(e, value) for e in arr):
        arr.append(value)
    cset(c, k, arr)


def op_pull(doc, parts, value, ctx, path):
    r = _array_at(doc, parts, False, '$pull', path, ctx)
    if r is None or r[2] is None:
        return
    c, k, arr = r
    if isinstance(value, dict):
        raise not_supported('$pull by a condition or document')
    new = [e for e in arr if not bson_eq(e, value)]
    if len(new) != len(arr):
        cset(c, k, new)


UPDATE_OPS = {
    '$set': op_set, '$setOnInsert': op_set, '$unset': op_unset, '$inc': op_inc,
    '$max': op_max, '$push': op_push, '$addToSet': op_add_to_set, '$pull': op_pull,
}
# MongoDB's other update operators: the stand-in refuses them with 115 (walfold sends none).
# Any other name is unknown to MongoDB as well: 9 FailedToParse "Unknown modifier".
UNSUPPORTED_UPDATE_OPS = frozenset(['$mul', '$min', '$rename', '$currentDate', '$pop',
                                    '$pullAll', '$bit'])


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
        if fn is None and opname in UNSUPPORTED_UPDATE_OPS:
            raise not_supported('the update operator %s' % opname)
        if fn is None:
            raise MongoError(9, "Unknown modifier: %s. Expected a valid update modifier or "
                                "pipeline-style update specified as an array" % opname)
        if not isinstance(spec, dict):
            raise MongoError(9, 'Modifiers operate on fields but we found type %s instead. For '
                                'example: {$mod: {<field>: ...}} not {%s: %s}' % (
                                    type_name(spec), opname, fmt(spec)))
        for path, value in spec.items():
            parts = split_path(path)
            for p in parts:
                if p == '$' or p.startswith('$['):
                    raise not_supported("the positional operator in '%s'" % path)
                if p.startswith('$'):
                    raise MongoError(52, "The dollar ($) prefixed field '%s' in '%s' is not "
                                         "valid for storage." % (p, path))
            ops.append((_path_sort_key(parts), parts, opname, fn, path))
    ops.sort(key=lambda o: o[0])
    for a, b in zip(ops, ops[1:]):
        pa, pb = a[1], b[1]
        if pb[:len(pa)] == pa:
            raise MongoError(40, "Updating the path '%s' would create a conflict at '%s'" % (
                '.'.join(pb), '.'.join(pa)))
    return [(opname, path, parts, fn) for _, parts, opname, fn, path in ops]


def compile_update(update):
    """Validate an operator update document; returns ((parts, opname, fn, value, path) tuples
    sorted by field path (MongoDB 5.0+ applies updates in that order), big) where `big` says
    whether a value may take the document past 16 MiB (carries_big_value).

    The path analysis only depends on the update's shape (operators and field names), which
    repeats across the statements of a bulk write, so it is cached."""
    try:
        shape = tuple((op, tuple(spec)) for op, spec in update.items())
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
    big = False
    for opname, path, parts, fn in plan:
        value = update[opname][path]
        if opname == '$inc' and num_kind(value) is None:
            raise MongoError(14, 'Cannot increment with non-numeric argument: {%s: %s}' % (
                path, fmt(value)))
        t = type(value)
        if (t is dict or t is list or t is str or t is bytes) and not big:
            big = carries_big_value(value, 1)
        ops.append((parts, opname, fn, value, path))
    return ops, big


def apply_ops(doc, ops, ctx):
    for parts, opname, fn, value, path in ops:
        if opname == '$setOnInsert' and not ctx.is_insert:
            continue
        fn(doc, parts, value, ctx, path)


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
    """Hashable, MongoDB-equality-preserving key (the store key of a document-valued _id)."""
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


class CollMeta(object):
    """Index catalogue (no index is used or enforced but _id's) and validator of one
    collection; its documents live in Engine.dbs."""

    def __init__(self):
        self.indexes = {'_id_': {'v': 2, 'key': {'_id': 1}, 'name': '_id_'}}
        self.validator = None  # a query document (validationLevel strict, action error)

    def validate(self, doc):
        if self.validator and not filter_applies(self.validator, doc):
            raise MongoError(121, 'Document failed validation',
                             errInfo={'failingDocumentId': doc.get('_id'),
                                      'details': {'operatorName': 'query',
                                                  'validator': self.validator}})


# ---------------------------------------------------------------------------------------------
# Document size limit, find projections
# ---------------------------------------------------------------------------------------------
_BIG_VALUE = 1024 * 1024  # a str/bytes value this long makes a write check the document's size
_BIG_ARRAY = 1000


def carries_big_value(v, depth=0):
    """Can a write with `v` in it (an update document, a document to insert) take a document
    past 16 MiB?  Encoding every written document to measure it would halve the stand-in's
    fold rate, so only writes that carry a long string/bytes value or a long array (looked for
    two levels deep) are measured; a document grown past the limit by many small writes is not
    caught (MONGO_STANDIN.md, known differences)."""
    t = type(v)
    if t is str or t is bytes:
        return len(v) >= _BIG_VALUE
    if depth > 2:
        return False
    if t is dict:
        for x in v.values():
            tx = type(x)
            if (tx is dict or tx is list or tx is str or tx is bytes) and \
                    carries_big_value(x, depth + 1):
                return True
        return False
    if t is list:
        if len(v) >= _BIG_ARRAY:
            return True
        for x in v:
            tx = type(x)
            if (tx is dict or tx is list or tx is str or tx is bytes) and \
                    carries_big_value(x, depth + 1):
                return True
    return False


def check_size(doc, what):
    """MongoDB's 16 MiB BSON document limit
    (https://www.mongodb.com/docs/manual/reference/limits/#mongodb-limit-BSON-Document-Size):
    an update whose result is larger fails with 17419 "Resulting document after update is
    larger than 16777216"; an insert with 2 BadValue "object to insert too large" (mongod's
    fixDocumentForInsert, src/mongo/db/ops/insert.cpp).  pymongo sends a document of up to
    16 MiB + 16 KiB (the wire allowance), so the server check is reachable."""
    size = len(bson.encode(doc))
    if size <= MAX_BSON_OBJECT_SIZE:
        return
    if what == 'update':
        raise MongoError(17419, 'Resulting document after update is larger than %d'
                         % MAX_BSON_OBJECT_SIZE)
    raise MongoError(2, 'object to insert too large. size in bytes: %d, max size: %d'
                     % (size, MAX_BSON_OBJECT_SIZE))


def compile_projection(spec):
    """A find projection as walfold sends it: top-level fields, all included (1/true) or all
    excluded (0/false), _id included unless excluded. Returns None (whole documents) or
    (inclusive, fields, keep_id). Dotted paths and projection operators are refused (115)."""
    if not spec:
        return None
    include = None
    keep_id = True
    fields = set()
    for k, v in spec.items():
        if '.' in k or k.startswith('$') or isinstance(v, dict):
            raise not_supported('the projection %s: %s' % (k, fmt(v)))
        if num_kind(v) is None and not isinstance(v, bool):
            raise not_supported('the projection %s: %s' % (k, fmt(v)))
        on = bool(v)
        if k == '_id':
            keep_id = on
            continue
        if include is None:
            include = on
        elif include != on:
            # https://www.mongodb.com/docs/manual/reference/method/db.collection.find/
            # ("you cannot combine inclusion and exclusion statements", except for _id)
            raise MongoError(31254 if include else 31253,
                             'Cannot do %s on field %s in %s projection' % (
                                 'exclusion' if include else 'inclusion', k,
                                 'inclusion' if include else 'exclusion'))
        fields.add(k)
    if include is None:  # only _id named: {_id: 1} is _id alone, {_id: 0} all but _id
        return (True, fields, True) if keep_id else (False, fields, False)
    return (include, fields, keep_id)


def project(doc, compiled):
    if compiled is None:
        return doc
    include, fields, keep_id = compiled
    if include:
        return {k: v for k, v in doc.items() if k in fields or (k == '_id' and keep_id)}
    return {k: v for k, v in doc.items()
            if k not in fields and not (k == '_id' and not keep_id)}


def find_sort(docs, fields):
    """`docs` sorted for find: BSON order of each field's value (missing sorts as null).
    MongoDB sorts an array by its smallest/largest element; walfold never sorts on one: refused
    (115). Stable, so ties keep natural order (MongoDB promises no order for ties)."""
    keyed = []
    for d in docs:
        vals = []
        for f, _ in fields:
            v = get_path(d, f)
            if type(v) is list:
                raise not_supported("sorting on the array field '%s'" % f)
            vals.append(v)
        keyed.append((vals, d))

    def cmp(a, b):
        for (_, direction), x, y in zip(fields, a[0], b[0]):
            c = bson_cmp(x, y)
            if c:
                return c * direction
        return 0
    keyed.sort(key=functools.cmp_to_key(cmp))
    return [d for _, d in keyed]


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
_NO_DOCS = IndexedDocs()  # what a missing collection reads as (never written to)


class Engine(object):
    def __init__(self):
        self.dbs = {}  # db -> {collection -> IndexedDocs}
        self.lock = threading.RLock()
        self.meta = {}
        self.cursors = {}
        self.connections = 0
        self.total_connections = 0
        self.commands = {
            'hello': self.cmd_hello, 'isMaster': self.cmd_hello, 'ismaster': self.cmd_hello,
            'ping': self.cmd_ping, 'buildInfo': self.cmd_build_info,
            'buildinfo': self.cmd_build_info, 'endSessions': self.cmd_ok,
            'insert': self.cmd_insert, 'update': self.cmd_update, 'delete': self.cmd_delete,
            'find': self.cmd_find, 'getMore': self.cmd_get_more,
            'killCursors': self.cmd_kill_cursors, 'createIndexes': self.cmd_create_indexes,
            'collMod': self.cmd_coll_mod, 'dropDatabase': self.cmd_drop_database,
        }
        # Commands that only read static data do not take the store lock.
        self.lockless = {'hello', 'isMaster', 'ismaster', 'ping', 'buildInfo', 'buildinfo',
                         'endSessions', 'insert', 'update', 'delete'}

    # -- store helpers --------------------------------------------------------------------------
    def create(self, db, coll):
        colls = self.dbs.setdefault(db, {})
        if coll not in colls:
            colls[coll] = IndexedDocs()

    def documents(self, db, coll):
        """The collection's documents; an empty mapping for a missing collection."""
        docs = self.dbs.get(db, {}).get(coll)
        return _NO_DOCS if docs is None else docs

    def exists(self, db, coll):
        return coll in self.dbs.get(db, {})

    def meta_of(self, db, coll):
        key = (db, coll)
        m = self.meta.get(key)
        if m is None:
            m = self.meta[key] = CollMeta()
        return m

    def candidates(self, db, coll, query):
        """Documents that can match `query`, in natural order: by _id, by a plain top-level
        equality (IndexedDocs' value index), or all of them. The matcher still decides."""
        docs = self.documents(db, coll)
        cands = id_candidates(docs, query)
        if cands is not None:
            return cands
        for k, v in query.items():
            if k[:1] == '$' or '.' in k or type(v) not in (int, Int64, str):
                continue
            return docs.equal_candidates(k, v)
        return list(docs.values())

    def match_docs(self, db, coll, query, limit=None):
        cands = self.candidates(db, coll, query)
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
        sort_list = []
        for k, v in (sort or {}).items():
            if isinstance(v, dict):
                raise not_supported('sorting by %s' % fmt(v))
            d = as_int(v, 'sort direction')
            if d not in (1, -1):
                raise MongoError(2, '$sort key ordering must be 1 (for ascending) or -1 '
                                    '(for descending)')
            sort_list.append((k, d))
        fields = compile_projection(projection)
        docs = self.match_docs(db, coll, flt)
        if sort_list:
            # https://www.mongodb.com/docs/manual/reference/method/cursor.sort/
            docs = find_sort(docs, sort_list)
        if skip:
            docs = docs[skip:]
        if limit:
            docs = docs[:limit]
        return [project(d, fields) for d in docs]

    # -- write primitives (caller holds the lock) -----------------------------------------------
    def insert_doc(self, db, coll, doc, what='insert', big=None):
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
        self.create(db, coll)
        docs = self.documents(db, coll)
        key = store_key(_id)
        if key in docs:
            raise MongoError(11000, 'E11000 duplicate key error collection: %s.%s index: _id_ '
                                    'dup key: { _id: %s }' % (db, coll, fmt(_id)),
                             keyPattern={'_id': 1}, keyValue={'_id': _id})
        meta = self.meta.get((db, coll))
        if meta is not None:
            meta.validate(doc)
        if big if big is not None else carries_big_value(doc):
            check_size(doc, what)
        docs[key] = doc
        return _id

    def replace_doc(self, db, coll, old, new, big=True):
        key = store_key(old['_id'])
        meta = self.meta.get((db, coll))
        if meta is not None:
            meta.validate(new)
        if big:
            check_size(new, 'update')
        self.documents(db, coll)[key] = new

    def remove_doc(self, db, coll, doc):
        del self.documents(db, coll)[store_key(doc['_id'])]

    def _ensure_hit(self, db, coll, stmt):
        """The stored document when `stmt` is {q: {_id: v}, u: {$setOnInsert: {plain fields}}}
        (any upsert, no multi) and the document exists: such a statement
        matches it and changes nothing, so the general path (validation, clone, apply,
        compare) would come to the same n=1, nModified=0. Otherwise None. walfold sends one
        per document it touches (create-if-missing), half of its statements."""
        if type(stmt) is not dict or stmt.get('multi') or 'arrayFilters' in stmt:
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
            ops, big = compile_update(u)
        else:
            big = carries_big_value(u)
            if multi:
                raise MongoError(9, 'multi update is not supported for replacement-style update')
            for k in u:
                if k.startswith('$'):
                    raise MongoError(52, "The dollar ($) prefixed field '%s' in '%s' is not "
                                         "allowed in the context of an update's replacement "
                                         "document. Consider using an aggregation pipeline "
                                         "with $replaceWith." % (k, k))
            ops = None
        if stmt.get('arrayFilters') is not None:
            raise not_supported('arrayFilters')
        ctx = UpdateCtx()
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
                self.replace_doc(db, coll, old, new, big)
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
            upserted = self.insert_doc(db, coll, new, 'update', big)
            return 1, 0, upserted, None, new
        return n, n_modified, MISSING, last_old, last_new

    # -- command dispatch -------------------------------------------------------------------------
    def run_command(self, doc, db, conn):
        if not isinstance(doc, dict) or not doc:
            return MongoError(59, 'no such command: empty command document').reply()
        name = next(iter(doc))
        handler = self.commands.get(name)
        if handler is None and name in KNOWN_UNSUPPORTED_COMMANDS:
            log('unsupported command %r on database %r (replying CommandNotSupported)'
                % (name, db))
            return not_supported("the command '%s'" % name).reply()
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
            'storageEngines': ['walfold-standin'],
            'javascriptEngine': 'none',
            'modules': [],
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
            self.create(db, coll)
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

    # -- catalogue --------------------------------------------------------------------------------
    @staticmethod
    def _validator(cmd, cmdname):
        """A query-document validator; $jsonSchema and $expr are not supported (115)."""
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

    def cmd_drop_database(self, cmd, db, conn):
        self.dbs.pop(db, None)
        for key in [k for k in self.meta if k[0] == db]:
            del self.meta[key]
        prefix = db + '.'
        for cid in [cid for cid, c in self.cursors.items() if c.ns.startswith(prefix)]:
            del self.cursors[cid]
        return {'dropped': db, 'ok': 1.0}

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
            for opt in ('unique', 'sparse', 'partialFilterExpression', 'expireAfterSeconds',
                        'collation', 'weights', 'wildcardProjection'):
                if opt in spec:
                    raise not_supported("an index with '%s'" % opt)
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
                continue
            for other in meta.indexes.values():
                if bson.encode(other['key']) == bson.encode(key):
                    raise MongoError(85, 'Index already exists with a different name: %s'
                                     % other['name'])
            new_specs.append(doc)
        for doc in new_specs:
            meta.indexes[doc['name']] = doc
        self.create(db, coll)
        reply = {'numIndexesBefore': before, 'numIndexesAfter': len(meta.indexes),
                 'createdCollectionAutomatically': created_coll, 'ok': 1.0}
        if not new_specs:
            reply['note'] = 'all indexes already exist'
        return reply

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
