#include "tests/harness/tls.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

namespace walfold::test {
namespace {

namespace fs = std::filesystem;

void openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  CmdResult r = run_command(argv, 60);
  if (r.status != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += " " + a;
    throw std::runtime_error("openssl failed (status " + std::to_string(r.status) + "):" + cmd +
                             "\n" + r.output);
  }
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  if (!f.flush()) throw std::runtime_error("cannot write " + path);
}

bool bindable(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string pg_setting(const std::string& name) {
  return pg_scalar(pg_admin_dsn(), "SELECT current_setting('" + name + "')");
}

void pg_reload_and_wait(const std::string& want_ssl) {
  pg_query(pg_admin_dsn(), "SELECT pg_reload_conf()");
  // The postmaster re-reads its files on SIGHUP; new sessions see the result.
  if (!wait_until([&] { return pg_setting("ssl") == want_ssl; }, std::chrono::seconds(30)))
    throw std::runtime_error("PostgreSQL did not switch to ssl = " + want_ssl +
                             " after pg_reload_conf() within 30 s; see " + servers().pg_log);
}

}  // namespace

TestCa make_test_ca(const std::string& dir, const std::string& name) {
  fs::create_directories(dir);
  TestCa ca{dir, name, dir + "/" + name + "-ca.pem", dir + "/" + name + "-ca.key"};
  openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", ca.key, "-out", ca.cert, "-days", "2", "-subj", "/CN=walfold test CA " + name,
           "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
           "keyUsage=critical,keyCertSign,cRLSign"});
  return ca;
}

TestCert make_server_cert(const TestCa& ca, const std::string& name,
                          const std::vector<std::string>& subject_alt_names) {
  TestCert c{ca.dir + "/" + name + ".pem", ca.dir + "/" + name + ".key"};
  const std::string csr = ca.dir + "/" + name + ".csr", ext = ca.dir + "/" + name + ".ext";
  std::string san;
  for (const auto& s : subject_alt_names) san += (san.empty() ? "" : ",") + s;
  write_file(ext,
             "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
             "extendedKeyUsage=serverAuth\nsubjectAltName=" +
                 san + "\n");
  openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
           c.key, "-out", csr, "-subj", "/CN=" + name});
  openssl({"x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out",
           c.cert, "-days", "2", "-extfile", ext});
  return c;
}

ReservedPort::ReservedPort() {
  const char* env = std::getenv("WALFOLD_TEST_PORT_LOCK_DIR");
  const std::string lock_dir = env && *env ? env : "/tmp/walfold-ports";
  fs::create_directories(lock_dir);
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(20000, 40000);
  for (int tries = 0; tries < 200; ++tries) {
    int port = pick(rng);
    std::string lock = lock_dir + "/" + std::to_string(port) + ".lock";
    int fd = ::open(lock.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && bindable(port)) {
      port_ = port;
      lock_fd_ = fd;
      return;
    }
    ::close(fd);
  }
  throw std::runtime_error("no free port in 20000-40000 after 200 tries (locks in " + lock_dir +
                           ")");
}

ReservedPort::~ReservedPort() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

PgTlsOn::PgTlsOn(const TestCert& cert) {
  const Servers& s = servers();
  const std::string dir = s.dir + "/pg-tls";
  fs::create_directories(dir);
  const std::string crt = dir + "/server.pem", key = dir + "/server.key";
  fs::copy_file(cert.cert, crt, fs::copy_options::overwrite_existing);
  fs::copy_file(cert.key, key, fs::copy_options::overwrite_existing);
  // PostgreSQL refuses a key readable by others; it must be owned by its OS user (mode 0600).
  ::chmod(key.c_str(), 0600);
  ::chmod(crt.c_str(), 0644);
  ::chmod(dir.c_str(), 0700);
  const std::string os_user = servers_env()["WALFOLD_TEST_PG_OS_USER"];
  if (!os_user.empty()) {
    const passwd* pw = ::getpwnam(os_user.c_str());
    if (!pw) throw std::runtime_error("no such user: " + os_user);
    for (const auto& p : {dir, crt, key})
      if (::chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0)
        throw std::runtime_error("chown " + p + ": " + std::strerror(errno));
  }
  // ALTER SYSTEM cannot run inside a transaction block: one statement per call.
  pg_query(pg_admin_dsn(), "ALTER SYSTEM SET ssl_cert_file = '" + crt + "'");
  pg_query(pg_admin_dsn(), "ALTER SYSTEM SET ssl_key_file = '" + key + "'");
  pg_query(pg_admin_dsn(), "ALTER SYSTEM SET ssl = on");
  pg_reload_and_wait("on");
}

PgTlsOn::~PgTlsOn() {
  try {
    for (const char* k : {"ssl", "ssl_cert_file", "ssl_key_file"})
      pg_query(pg_admin_dsn(), std::string("ALTER SYSTEM RESET ") + k);
    pg_reload_and_wait("off");
  } catch (const std::exception& e) {
    ADD_FAILURE_AT(__FILE__, __LINE__) << "turning TLS off again in PostgreSQL: " << e.what();
  }
}

Stunnel::Stunnel(const std::string& dir, const TestCert& cert, const std::string& backend_host,
                 int backend_port) {
  std::string bin;
  for (const char* b : {"/usr/bin/stunnel4", "/usr/bin/stunnel"})
    if (::access(b, X_OK) == 0) {
      bin = b;
      break;
    }
  if (bin.empty())
    throw std::runtime_error(
        "stunnel not found: apt-get install stunnel4 (tests/harness/servers.sh install-deps)");
  const std::string conf = dir + "/stunnel-" + std::to_string(port()) + ".conf";
  write_file(conf, "foreground = yes\npid =\ndebug = notice\n[walfold-test]\naccept = 127.0.0.1:" +
                       std::to_string(port()) + "\nconnect = " + backend_host + ":" +
                       std::to_string(backend_port) + "\ncert = " + cert.cert +
                       "\nkey = " + cert.key + "\n");
  Process::Options o;
  o.log_path = dir + "/stunnel-" + std::to_string(port()) + ".log";
  process_ = std::make_unique<Process>(std::vector<std::string>{bin, conf}, o);
  if (!wait_until(
          [&] { return !process_->is_running() || tcp_port_open("127.0.0.1", port(), 500); },
          std::chrono::seconds(20)) ||
      !process_->is_running())
    throw std::runtime_error("stunnel did not listen on 127.0.0.1:" + std::to_string(port()) +
                             ":\n" + process_->output());
}

Stunnel::~Stunnel() {
  if (process_) process_->stop(std::chrono::seconds(5));
}

}  // namespace walfold::test
