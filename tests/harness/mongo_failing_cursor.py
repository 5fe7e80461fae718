#!/usr/bin/python3
"""A MongoDB that fails mid-cursor, for the sanitizer tests of walfold's error paths.

Every `find` is answered with a first batch (the documents given with --doc, as extended JSON,
for any collection) and an open cursor; every `getMore` on it fails with --code (default 6,
HostUnreachable) and --errmsg. The handshake, ping, killCursors and endSessions are answered
ok; any other command fails with code 115 (CommandNotSupported), so a test never passes on
something this server only pretends to do.

Built on python3-mockupdb (the wire protocol); run with Debian's /usr/bin/python3. Prints the
port it listens on (localhost, chosen by the kernel) as one line "port N" on stdout, then
serves until it gets SIGTERM or SIGINT.

    mongo_failing_cursor.py [--doc JSON]... [--code N] [--errmsg TEXT]
"""
import argparse
import signal
import sys
import threading

try:
    import mockupdb
    from bson import Int64, json_util
except ImportError as exc:  # pragma: no cover - environment problem, reported clearly
    sys.stderr.write('mongo_failing_cursor.py needs python3-mockupdb and python3-bson: %s\n' % exc)
    sys.exit(69)

CURSOR_ID = Int64(7_700_000_001)
HELLO = {
    'ismaster': True,
    'isWritablePrimary': True,
    'helloOk': True,
    'minWireVersion': 0,
    'maxWireVersion': 13,
    'maxBsonObjectSize': 16 * 1024 * 1024,
    'maxMessageSizeBytes': 48_000_000,
    'maxWriteBatchSize': 100_000,
    'logicalSessionTimeoutMinutes': 30,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--doc', action='append', default=[],
                        help='a document of every first batch (extended JSON)')
    parser.add_argument('--code', type=int, default=6)
    parser.add_argument('--errmsg', default='mongo_failing_cursor: getMore fails on purpose')
    args = parser.parse_args()
    docs = [json_util.loads(d) for d in args.doc]

    def handle(request):
        name = (request.command_name or '').lower()
        if name in ('ismaster', 'hello'):
            return request.ok(HELLO)
        if name in ('ping', 'killcursors', 'endsessions'):
            return request.ok()
        if name == 'find':
            ns = '%s.%s' % (request.doc.get('$db', 'test'), request.doc['find'])
            return request.ok(cursor={'id': CURSOR_ID, 'ns': ns, 'firstBatch': docs})
        if name == 'getmore':
            return request.command_err(code=args.code, errmsg=args.errmsg)
        return request.command_err(code=115, errmsg='mongo_failing_cursor: %s is not supported'
                                   % request.command_name)

    server = mockupdb.MockupDB(port=0, verbose=False)  # binds localhost
    server.autoresponds(handle)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    port = server.run()
    sys.stdout.write('port %d\n' % port)
    sys.stdout.flush()
    while not stop.wait(1.0):
        pass
    server.stop()


if __name__ == '__main__':
    main()
