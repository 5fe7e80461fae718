"""Which MongoDB the contract suite talks to: the stand-in (started here on a free loopback
port) or, when WALFOLD_TEST_MONGODB_URI is set, that server.  Shared with the stand-in's own
self-test (tests/harness/test_mongo_standin.py)."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from pymongo import MongoClient

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, '..', 'harness', 'mongo_standin.py')
PYTHON = '/usr/bin/python3'
URI_VAR = 'WALFOLD_TEST_MONGODB_URI'


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


class Target(object):
    """The server under test: `kind` is 'standin' or 'real'; `client()` a new pymongo client."""

    def __init__(self):
        self.uri = os.environ.get(URI_VAR) or None
        self.standin = None
        if self.uri:
            self.kind = 'real'
        else:
            self.kind = 'standin'
            self.standin = StandinProcess()
            self.uri = self.standin.uri

    def client(self, **kwargs):
        kwargs.setdefault('serverSelectionTimeoutMS', 10000)
        kwargs.setdefault('socketTimeoutMS', 120000)
        if self.standin is not None:
            kwargs.setdefault('directConnection', True)
        return MongoClient(self.uri, **kwargs)

    def describe(self):
        if self.kind == 'standin':
            return 'the stand-in (%s)' % STANDIN
        # Never print credentials: only what follows the last '@'.
        return 'the MongoDB at %s (%s)' % (self.uri.rsplit('@', 1)[-1], URI_VAR)

    def close(self):
        """Stops the stand-in; returns (exit code, its stderr) or (0, '') for a real server."""
        if self.standin is None:
            return 0, ''
        rc, _ = self.standin.stop()
        text = self.standin.stderr_text()
        self.standin.cleanup()
        return rc, text
