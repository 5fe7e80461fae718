// TLS for the integration tests: a throw-away CA and server certificates made with openssl, TLS
// switched on in the harness's PostgreSQL (ALTER SYSTEM + pg_reload_conf, undone afterwards), and
// stunnel (Debian's stunnel4) as a TLS terminator in front of the MongoDB stand-in.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/harness/servers.h"

namespace walfold::test {

// A CA made by `openssl` in `dir` (created if missing): dir/NAME-ca.pem (and its key).
struct TestCa {
  std::string dir;
  std::string name;
  std::string cert;  // dir/NAME-ca.pem
  std::string key;   // dir/NAME-ca.key
};
TestCa make_test_ca(const std::string& dir, const std::string& name);

// A server certificate signed by `ca` with the given subjectAltName entries ("DNS:localhost",
// "IP:127.0.0.1"): dir/NAME.pem and dir/NAME.key. Throws with openssl's output on failure.
struct TestCert {
  std::string cert;
  std::string key;
};
TestCert make_server_cert(const TestCa& ca, const std::string& name,
                          const std::vector<std::string>& subject_alt_names);

// A TCP port on 127.0.0.1 reserved like servers.sh does (a flock on
// $WALFOLD_TEST_PORT_LOCK_DIR/<port>.lock, default /tmp/walfold-ports, and a bind test), for as
// long as this object lives.
class ReservedPort {
 public:
  ReservedPort();
  ~ReservedPort();
  ReservedPort(const ReservedPort&) = delete;
  ReservedPort& operator=(const ReservedPort&) = delete;
  int port() const { return port_; }

 private:
  int port_ = 0;
  int lock_fd_ = -1;
};

// Turns on TLS in the harness's PostgreSQL with this certificate and key for as long as it lives:
// copies them to DIR/pg-tls/ (owned by PostgreSQL's OS user; they stay there so that a later
// restart of PostgreSQL still finds them even if this test died before undoing the setting),
// ALTER SYSTEM SET ssl, ssl_cert_file, ssl_key_file, then pg_reload_conf() and waits until a new
// session sees ssl = on. The destructor resets those settings and reloads.
class PgTlsOn {
 public:
  explicit PgTlsOn(const TestCert& cert);
  ~PgTlsOn();
  PgTlsOn(const PgTlsOn&) = delete;
  PgTlsOn& operator=(const PgTlsOn&) = delete;
};

// stunnel in server mode: accepts TLS on 127.0.0.1:port() with `cert` and forwards the plain
// bytes to backend_host:backend_port. Its log (notice level: one line per accepted connection)
// is kept in `dir`. Stopped by the destructor.
class Stunnel {
 public:
  Stunnel(const std::string& dir, const TestCert& cert, const std::string& backend_host,
          int backend_port);
  ~Stunnel();
  Stunnel(const Stunnel&) = delete;
  Stunnel& operator=(const Stunnel&) = delete;
  int port() const { return port_.port(); }
  std::string output() const { return process_ ? process_->output() : std::string(); }

 private:
  ReservedPort port_;
  std::unique_ptr<Process> process_;
};

}  // namespace walfold::test
