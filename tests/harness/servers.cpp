// walfold test harness; see servers.h and README.md.
#include "servers.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

extern char** environ;

namespace walfold::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string getenv_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses one shell word as written by servers.sh (bare, '...' with '\'' escapes, "..." or \x).
std::string parse_shell_value(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == '\'') {
      size_t end = s.find('\'', i + 1);
      if (end == std::string::npos) throw std::runtime_error("unterminated ' in: " + s);
      out.append(s, i + 1, end - i - 1);
      i = end + 1;
    } else if (c == '"') {
      ++i;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < s.size() && std::strchr("\"\\$`", s[i + 1])) ++i;
        out.push_back(s[i++]);
      }
      if (i >= s.size()) throw std::runtime_error("unterminated \" in: " + s);
      ++i;
    } else if (c == '\\' && i + 1 < s.size()) {
      out.push_back(s[i + 1]);
      i += 2;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      break;  // end of the word (a trailing comment may follow)
    } else {
      out.push_back(c);
      ++i;
    }
  }
  return out;
}

std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::map<std::string, std::string> env;
  std::string line;
  while (std::getline(in, line)) {
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    if (line.compare(start, 7, "export ") == 0) start += 7;
    size_t eq = line.find('=', start);
    if (eq == std::string::npos) continue;
    env[line.substr(start, eq - start)] = parse_shell_value(line.substr(eq + 1));
  }
  return env;
}

int to_port(const std::map<std::string, std::string>& env, const std::string& key) {
  auto it = env.find(key);
  if (it == env.end() || it->second.empty()) throw std::runtime_error("servers env lacks " + key);
  try {
    return std::stoi(it->second);
  } catch (const std::exception&) {
    throw std::runtime_error("servers env: bad " + key + "=" + it->second);
  }
}

std::string env_get(const std::map<std::string, std::string>& env, const std::string& key) {
  auto it = env.find(key);
  return it == env.end() ? std::string() : it->second;
}

Servers servers_from_env(const std::string& dir) {
  auto env = read_env_file(dir + "/env");
  Servers s;
  s.dir = dir;
  s.pg_host = env_get(env, "WALFOLD_TEST_PG_HOST");
  s.pg_port = to_port(env, "WALFOLD_TEST_PG_PORT");
  s.pg_socket_dir = env_get(env, "WALFOLD_TEST_PG_SOCKET_DIR");
  s.pg_superuser = env_get(env, "WALFOLD_TEST_PG_SUPERUSER");
  s.pg_repl_user = env_get(env, "WALFOLD_TEST_PG_REPL_USER");
  s.pg_repl_password = env_get(env, "WALFOLD_TEST_PG_REPL_PASSWORD");
  s.pg_bin_dir = env_get(env, "WALFOLD_TEST_PG_BIN");
  s.pg_log = env_get(env, "WALFOLD_TEST_PG_LOG");
  s.redis_host = env_get(env, "WALFOLD_TEST_REDIS_HOST");
  s.redis_port = to_port(env, "WALFOLD_TEST_REDIS_PORT");
  s.redis_log = env_get(env, "WALFOLD_TEST_REDIS_LOG");
  s.mongo_uri = env_get(env, "WALFOLD_TEST_MONGODB_URI");
  s.mongo_is_real = env_get(env, "WALFOLD_TEST_MONGO_KIND") == "real";
  s.mongo_log = env_get(env, "WALFOLD_TEST_MONGO_LOG");
  if (s.pg_host.empty() || s.pg_superuser.empty() || s.redis_host.empty() || s.mongo_uri.empty())
    throw std::runtime_error(dir + "/env is incomplete");
  return s;
}

struct State {
  std::mutex mu;
  bool started = false;
  std::optional<std::string> error;
  Servers servers;
  pid_t owner_pid = -1;
};

State& state() {
  static State* s = new State;  // never destroyed: used from atexit
  return *s;
}

void stop_servers_at_exit() {
  State& st = state();
  if (!st.started || !st.servers.owned || getpid() != st.owner_pid) return;
  bool passed = true;
  if (auto* ut = ::testing::UnitTest::GetInstance()) passed = ut->Passed();
  bool keep = !passed || getenv_str("WALFOLD_TEST_KEEP_SERVERS_DIR") == "1";
  try {
    std::vector<std::string> argv = {"bash", servers_script(), "stop", st.servers.dir};
    if (!keep) argv.push_back("--clean");
    CmdResult r = run_command(argv, 180);
    if (r.status != 0)
      std::fprintf(stderr, "walfold test harness: servers.sh stop failed (%d):\n%s\n", r.status,
                   r.output.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "walfold test harness: stopping servers failed: %s\n", e.what());
  }
  if (keep)
    std::fprintf(stderr, "walfold test harness: servers stopped; logs kept in %s\n",
                 st.servers.dir.c_str());
}

// ---- process spawning ------------------------------------------------------------------------

struct CStrings {
  std::vector<std::string> storage;
  std::vector<char*> ptrs;
  explicit CStrings(std::vector<std::string> v) : storage(std::move(v)) {
    for (auto& s : storage) ptrs.push_back(s.data());
    ptrs.push_back(nullptr);
  }
  char** get() { return ptrs.data(); }
};

CStrings make_envp(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    std::string key = kv.substr(0, kv.find('='));
    if (extra.count(key)) continue;
    out.push_back(std::move(kv));
  }
  for (const auto& [k, v] : extra) out.push_back(k + "=" + v);
  return CStrings(std::move(out));
}

int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return -WTERMSIG(st);
  return -1;
}

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Forks and execs argv in a new process group with stdin=/dev/null and stdout/stderr=out_fd.
// Returns the pid, or -errno if the program could not be executed (the child is reaped then).
pid_t spawn(const std::vector<std::string>& argv_in, const std::map<std::string, std::string>& env,
            int out_fd, const std::string& cwd) {
  if (argv_in.empty()) throw std::invalid_argument("spawn: empty argv");
  CStrings argv(argv_in);
  CStrings envp = make_envp(env);
  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(errpipe[0]);
    ::close(errpipe[1]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(e));
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on.
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    int err = 0;
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull < 0 || ::dup2(devnull, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(out_fd, 2) < 0)
      err = errno;
    if (!err && !cwd.empty() && ::chdir(cwd.c_str()) != 0) err = errno;
    if (!err) {
      // Keep only 0-2 and the error pipe (close-on-exec).
      int keep = errpipe[1];
      if (keep > 3) ::close_range(3, static_cast<unsigned>(keep - 1), 0);
      ::close_range(static_cast<unsigned>(keep + 1), ~0U, 0);
      ::execvpe(argv.get()[0], argv.get(), envp.get());
      err = errno;
    }
    write_all(errpipe[1], reinterpret_cast<const char*>(&err), sizeof err);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also in the parent, so kill(-pid) works at once
  ::close(errpipe[1]);
  int child_err = 0;
  ssize_t n;
  do {
    n = ::read(errpipe[0], &child_err, sizeof child_err);
  } while (n < 0 && errno == EINTR);
  ::close(errpipe[0]);
  if (n == static_cast<ssize_t>(sizeof child_err)) {
    int st;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return -child_err;
  }
  return pid;
}

void pg_notice_ignore(void*, const char*) {}

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t b = 0;
  while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  return s.substr(b);
}

std::string quote_conninfo_value(const std::string& v) {
  bool plain = !v.empty();
  for (char c : v)
    if (std::isspace(static_cast<unsigned char>(c)) || c == '\'' || c == '\\') plain = false;
  if (plain) return v;
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

void render_reply(const redisReply* r, std::string& out) {
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      out.append(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.append("(error) ");
      out.append(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.append(std::to_string(r->integer));
      break;
    case REDIS_REPLY_NIL:
      out.append("(nil)");
      break;
    case REDIS_REPLY_ARRAY:
#ifdef REDIS_REPLY_MAP
    case REDIS_REPLY_MAP:
#endif
#ifdef REDIS_REPLY_SET
    case REDIS_REPLY_SET:
#endif
#ifdef REDIS_REPLY_PUSH
    case REDIS_REPLY_PUSH:
#endif
      for (size_t i = 0; i < r->elements; ++i) {
        if (i) out.push_back('\n');
        render_reply(r->element[i], out);
      }
      break;
#ifdef REDIS_REPLY_DOUBLE
    case REDIS_REPLY_DOUBLE:
      out.append(r->str, r->len);
      break;
#endif
#ifdef REDIS_REPLY_BOOL
    case REDIS_REPLY_BOOL:
      out.append(r->integer ? "1" : "0");
      break;
#endif
#ifdef REDIS_REPLY_VERB
    case REDIS_REPLY_VERB:
      out.append(r->str, r->len);
      break;
#endif
#ifdef REDIS_REPLY_BIGNUM
    case REDIS_REPLY_BIGNUM:
      out.append(r->str, r->len);
      break;
#endif
    default:
      out.append("(unknown reply type " + std::to_string(r->type) + ")");
  }
}

}  // namespace

// ---- servers ---------------------------------------------------------------------------------

const Servers& servers() {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  if (st.started) return st.servers;
  if (st.error) throw std::runtime_error(*st.error);
  try {
    std::string reuse = getenv_str("WALFOLD_TEST_SERVERS_DIR");
    if (!reuse.empty()) {
      st.servers = servers_from_env(reuse);
      st.servers.owned = false;
      st.started = true;
      return st.servers;
    }
    std::string tmp = getenv_str("TMPDIR");
    if (tmp.empty()) tmp = "/tmp";
    while (tmp.size() > 1 && tmp.back() == '/') tmp.pop_back();
    std::string templ = tmp + "/walfold-test-XXXXXX";
    if (!::mkdtemp(templ.data()))
      throw std::runtime_error("mkdtemp(" + templ + "): " + std::strerror(errno));
    std::string dir = templ;
    CmdResult r = run_command(
        {"bash", servers_script(), "start", dir, "--owner-pid", std::to_string(::getpid())}, 300);
    if (r.status != 0)
      throw std::runtime_error("servers.sh start " + dir + " failed (status " +
                               std::to_string(r.status) + "):\n" + r.output);
    st.servers = servers_from_env(dir);
    st.servers.owned = true;
    st.owner_pid = ::getpid();
    st.started = true;
    static bool registered = false;
    if (!registered) {
      std::atexit(stop_servers_at_exit);
      registered = true;
    }
    return st.servers;
  } catch (const std::exception& e) {
    st.error = std::string("walfold test servers: ") + e.what();
    throw std::runtime_error(*st.error);
  }
}

std::string servers_script() {
  return source_dir() + "/tests/harness/servers.sh";
}

void servers_ctl(const std::vector<std::string>& args) {
  if (args.empty()) throw std::invalid_argument("servers_ctl: no sub-command");
  const Servers& s = servers();
  std::vector<std::string> argv = {"bash", servers_script(), args[0], s.dir};
  argv.insert(argv.end(), args.begin() + 1, args.end());
  CmdResult r = run_command(argv, 300);
  if (r.status != 0) {
    std::string cmd;
    for (const auto& a : args) cmd += " " + a;
    throw std::runtime_error("servers.sh" + cmd + " failed (status " + std::to_string(r.status) +
                             "):\n" + r.output);
  }
}

std::map<std::string, std::string> servers_env() {
  return read_env_file(servers().dir + "/env");
}

// ---- PostgreSQL ------------------------------------------------------------------------------

std::string pg_admin_dsn() {
  const Servers& s = servers();
  return "host=" + s.pg_host + " port=" + std::to_string(s.pg_port) +
         " dbname=postgres user=" + s.pg_superuser;
}

std::string fresh_pg_database(const std::string& prefix) {
  const Servers& s = servers();
  std::string name = unique_name(prefix);
  pg_query(pg_admin_dsn(), "CREATE DATABASE \"" + name + "\" TEMPLATE template0");
  return "host=" + s.pg_host + " port=" + std::to_string(s.pg_port) + " dbname=" + name +
         " user=" + s.pg_superuser;
}

std::string dsn_with(const std::string& dsn, const std::string& keyword, const std::string& value) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (!opts) {
    std::string msg = err ? trim(err) : "out of memory";
    if (err) PQfreemem(err);
    throw std::runtime_error("bad connection string \"" + dsn + "\": " + msg);
  }
  std::string out;
  bool replaced = false;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    std::string v;
    if (keyword == o->keyword) {
      v = value;
      replaced = true;
    } else if (o->val) {
      v = o->val;
    } else {
      continue;
    }
    if (!out.empty()) out += ' ';
    out += std::string(o->keyword) + "=" + quote_conninfo_value(v);
  }
  PQconninfoFree(opts);
  if (!replaced) throw std::invalid_argument("unknown libpq connection keyword: " + keyword);
  return out;
}

std::string replication_dsn(const std::string& dsn) {
  const Servers& s = servers();
  if (s.pg_repl_user.empty()) throw std::runtime_error("servers env has no replication role");
  return dsn_with(dsn_with(dsn, "user", s.pg_repl_user), "password", s.pg_repl_password);
}

PgRows pg_query(const std::string& dsn, const std::string& sql) {
  const char* keys[] = {"connect_timeout", "dbname", nullptr};
  const char* vals[] = {"10", dsn.c_str(), nullptr};
  std::unique_ptr<PGconn, PgConnDeleter> conn(PQconnectdbParams(keys, vals, 1));
  if (!conn) throw std::runtime_error("PQconnectdbParams: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK)
    throw std::runtime_error("cannot connect to PostgreSQL (" + dsn +
                             "): " + trim(PQerrorMessage(conn.get())));
  PQsetNoticeProcessor(conn.get(), pg_notice_ignore, nullptr);
  std::unique_ptr<PGresult, PgResultDeleter> res(PQexec(conn.get(), sql.c_str()));
  if (!res) throw std::runtime_error("PQexec: " + trim(PQerrorMessage(conn.get())));
  switch (PQresultStatus(res.get())) {
    case PGRES_TUPLES_OK: {
      PgRows rows;
      int nr = PQntuples(res.get()), nf = PQnfields(res.get());
      rows.reserve(static_cast<size_t>(nr));
      for (int i = 0; i < nr; ++i) {
        std::vector<std::optional<std::string>> row;
        row.reserve(static_cast<size_t>(nf));
        for (int j = 0; j < nf; ++j) {
          if (PQgetisnull(res.get(), i, j))
            row.emplace_back(std::nullopt);
          else
            row.emplace_back(std::string(PQgetvalue(res.get(), i, j),
                                         static_cast<size_t>(PQgetlength(res.get(), i, j))));
        }
        rows.push_back(std::move(row));
      }
      return rows;
    }
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
      return {};
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
      throw std::runtime_error("pg_query does not support COPY / streaming statements: " + sql);
    default:
      throw std::runtime_error("SQL failed: " + trim(PQresultErrorMessage(res.get())) +
                               "\n  SQL: " + sql);
  }
}

std::string pg_scalar(const std::string& dsn, const std::string& sql) {
  PgRows rows = pg_query(dsn, sql);
  if (rows.size() != 1 || rows[0].size() != 1)
    throw std::runtime_error("pg_scalar: expected 1 row x 1 column, got " +
                             std::to_string(rows.size()) + " rows: " + sql);
  if (!rows[0][0]) throw std::runtime_error("pg_scalar: NULL from: " + sql);
  return *rows[0][0];
}

// ---- names -----------------------------------------------------------------------------------

std::string unique_name(const std::string& prefix) {
  static std::atomic<unsigned> counter{0};
  thread_local std::mt19937_64 rng{std::random_device{}() ^
                                   static_cast<uint64_t>(Clock::now().time_since_epoch().count())};
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(rng()));
  std::string tail = "_" + std::to_string(::getpid()) + "_" + std::to_string(counter.fetch_add(1)) +
                     "_" + std::string(hex, 6);
  std::string p;
  for (char c : prefix) {
    unsigned char u = static_cast<unsigned char>(c);
    p.push_back(std::isalnum(u) ? static_cast<char>(std::tolower(u)) : '_');
  }
  if (p.empty()) p = "n";
  if (std::isdigit(static_cast<unsigned char>(p[0]))) p = "n" + p;
  if (p.size() + tail.size() > 63) p.resize(63 - tail.size());
  return p + tail;
}

// ---- Redis -----------------------------------------------------------------------------------

std::string redis_cmd_at(const std::string& host, int port, const std::vector<std::string>& argv) {
  if (argv.empty()) throw std::invalid_argument("redis_cmd: empty argv");
  timeval tv{5, 0};
  redisContext* c = redisConnectWithTimeout(host.c_str(), port, tv);
  if (!c) throw std::runtime_error("redis: cannot allocate context");
  if (c->err) {
    std::string msg = c->errstr;
    redisFree(c);
    throw std::runtime_error("cannot connect to Redis at " + host + ":" + std::to_string(port) +
                             ": " + msg);
  }
  timeval rw{30, 0};
  redisSetTimeout(c, rw);
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lens.data()));
  if (!reply) {
    std::string msg = c->errstr;
    redisFree(c);
    throw std::runtime_error("Redis " + host + ":" + std::to_string(port) + " " + argv[0] +
                             ": connection error: " + msg);
  }
  std::string out;
  render_reply(reply, out);
  freeReplyObject(reply);
  redisFree(c);
  return out;
}

std::string redis_cmd(const std::vector<std::string>& argv) {
  const Servers& s = servers();
  return redis_cmd_at(s.redis_host, s.redis_port, argv);
}

// ---- MongoDB / TCP ---------------------------------------------------------------------------

std::pair<std::string, int> mongo_host_port() {
  const std::string& uri = servers().mongo_uri;
  const std::string scheme = "mongodb://";
  if (uri.rfind(scheme, 0) != 0)
    throw std::runtime_error("mongo_host_port: only mongodb:// URIs are supported: " + uri);
  std::string rest = uri.substr(scheme.size());
  std::string authority = rest.substr(0, rest.find_first_of("/?"));
  if (auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  std::string first = authority.substr(0, authority.find(','));
  std::string host;
  std::string port;
  if (!first.empty() && first[0] == '[') {
    size_t close = first.find(']');
    if (close == std::string::npos) throw std::runtime_error("bad MongoDB URI: " + uri);
    host = first.substr(1, close - 1);
    if (close + 1 < first.size() && first[close + 1] == ':') port = first.substr(close + 2);
  } else {
    size_t colon = first.rfind(':');
    host = first.substr(0, colon);
    if (colon != std::string::npos) port = first.substr(colon + 1);
  }
  if (host.empty() || host.find('%') != std::string::npos)
    throw std::runtime_error("mongo_host_port: unsupported host in " + uri);
  int p = 27017;
  if (!port.empty()) {
    try {
      p = std::stoi(port);
    } catch (const std::exception&) {
      throw std::runtime_error("bad port in MongoDB URI: " + uri);
    }
  }
  return {host, p};
}

bool tcp_port_open(const std::string& host, int port, int timeout_ms) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return false;
  bool ok = false;
  for (addrinfo* a = res; a && !ok; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc == 0) {
      ok = true;
    } else if (errno == EINPROGRESS) {
      pollfd pfd{fd, POLLOUT, 0};
      if (::poll(&pfd, 1, timeout_ms) == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ok = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
      }
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return ok;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

// ---- paths -----------------------------------------------------------------------------------

std::string source_dir() {
#ifdef WALFOLD_SOURCE_DIR
  return WALFOLD_SOURCE_DIR;
#else
  std::string env = getenv_str("WALFOLD_SOURCE_DIR");
  if (!env.empty()) return env;
  throw std::runtime_error("source_dir(): WALFOLD_SOURCE_DIR was not defined at compile time");
#endif
}

std::string walfold_binary() {
  std::string env = getenv_str("WALFOLD_BIN");
  if (!env.empty()) return env;
#ifdef WALFOLD_BINARY_PATH
  return WALFOLD_BINARY_PATH;
#else
  throw std::runtime_error(
      "walfold_binary(): set WALFOLD_BIN or define WALFOLD_BINARY_PATH at compile time");
#endif
}

// ---- run_command -----------------------------------------------------------------------------

CmdResult run_command(const std::vector<std::string>& argv, int timeout_seconds,
                      const std::map<std::string, std::string>& extra_env) {
  if (argv.empty()) throw std::invalid_argument("run_command: empty argv");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  pid_t pid;
  try {
    pid = spawn(argv, extra_env, fds[1], "");
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  ::close(fds[1]);
  CmdResult result;
  if (pid < 0) {
    ::close(fds[0]);
    result.status = 127;
    result.output = "run_command: cannot execute " + argv[0] + ": " + std::strerror(-pid) + "\n";
    return result;
  }
  auto deadline = Clock::now() + std::chrono::seconds(timeout_seconds);
  auto kill_at = Clock::time_point::max();
  bool pipe_open = true;
  bool exited = false;
  int wstatus = 0;
  char buf[8192];
  while (!exited) {
    if (pipe_open) {
      pollfd pfd{fds[0], POLLIN, 0};
      int pr = ::poll(&pfd, 1, 50);
      if (pr > 0) {
        ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n > 0)
          result.output.append(buf, static_cast<size_t>(n));
        else if (n == 0 || (errno != EINTR && errno != EAGAIN))
          pipe_open = false;
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_t w = ::waitpid(pid, &wstatus, WNOHANG);
    if (w == pid) {
      exited = true;
      break;
    }
    auto now = Clock::now();
    if (!result.timed_out && now >= deadline) {
      result.timed_out = true;
      ::kill(-pid, SIGTERM);
      kill_at = now + std::chrono::seconds(5);
    } else if (result.timed_out && now >= kill_at) {
      ::kill(-pid, SIGKILL);
      kill_at = Clock::time_point::max();
    }
  }
  // Drain what the command wrote; do not wait for background grandchildren holding the pipe.
  if (pipe_open) {
    ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    for (;;) {
      ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n > 0) {
        result.output.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      break;
    }
  }
  ::close(fds[0]);
  result.status = decode_status(wstatus);
  if (result.timed_out)
    result.output +=
        "\n[run_command: timed out after " + std::to_string(timeout_seconds) + " s; killed]\n";
  return result;
}

// ---- Process ---------------------------------------------------------------------------------

Process::Process(std::vector<std::string> argv) : Process(std::move(argv), Options{}) {}

Process::Process(std::vector<std::string> argv, Options options)
    : argv_(std::move(argv)), options_(std::move(options)) {
  start();
}

void Process::start() {
  if (argv_.empty()) throw std::invalid_argument("Process: empty argv");
  int log_fd;
  const bool own_log = options_.log_path.empty();
  if (own_log) {
    std::string tmp = getenv_str("TMPDIR");
    if (tmp.empty()) tmp = "/tmp";
    std::string templ = tmp + "/walfold-proc-XXXXXX.log";
    log_fd = ::mkostemps(templ.data(), 4, O_CLOEXEC | O_APPEND);
    if (log_fd < 0) throw std::runtime_error("mkstemps(" + templ + "): " + std::strerror(errno));
    log_path_ = templ;
  } else {
    log_path_ = options_.log_path;
    log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) throw std::runtime_error("open(" + log_path_ + "): " + std::strerror(errno));
  }
  pid_t pid;
  try {
    pid = spawn(argv_, options_.env, log_fd, options_.cwd);
  } catch (...) {
    ::close(log_fd);
    if (own_log) ::unlink(log_path_.c_str());
    throw;
  }
  ::close(log_fd);
  if (pid < 0) {
    if (own_log) ::unlink(log_path_.c_str());
    throw std::runtime_error("Process: cannot execute " + argv_[0] +
                             (options_.cwd.empty() ? "" : " in " + options_.cwd) + ": " +
                             std::strerror(-pid));
  }
  pid_ = pid;
}

Process::~Process() {
  kill_and_reap();
}

Process::Process(Process&& other) noexcept
    : argv_(std::move(other.argv_)),
      options_(std::move(other.options_)),
      log_path_(std::move(other.log_path_)),
      pid_(other.pid_),
      status_(other.status_) {
  other.pid_ = -1;
}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    argv_ = std::move(other.argv_);
    options_ = std::move(other.options_);
    log_path_ = std::move(other.log_path_);
    pid_ = other.pid_;
    status_ = other.status_;
    other.pid_ = -1;
  }
  return *this;
}

void Process::kill_and_reap() {
  if (pid_ > 0 && !status_) {
    ::kill(-pid_, SIGKILL);
    reap(true);
  }
}

void Process::reap(bool block) {
  if (pid_ <= 0 || status_) return;
  int st = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_)
    status_ = decode_status(st);
  else if (r < 0 && errno == ECHILD)
    status_ = -1;  // reaped elsewhere
}

bool Process::is_running() {
  reap(false);
  return pid_ > 0 && !status_;
}

void Process::signal(int sig) {
  if (is_running()) ::kill(pid_, sig);
}

void Process::signal_group(int sig) {
  if (is_running()) ::kill(-pid_, sig);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    reap(false);
    if (status_ || pid_ <= 0) return status_;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int Process::stop(std::chrono::milliseconds grace) {
  if (is_running()) {
    ::kill(pid_, SIGTERM);
    if (!wait(grace)) {
      ::kill(-pid_, SIGKILL);
      reap(true);
    }
  }
  return status_.value_or(-1);
}

std::string Process::output() const {
  return read_file(log_path_);
}

bool Process::wait_for_output(const std::string& needle, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    bool running = is_running();
    if (output().find(needle) != std::string::npos) return true;
    if (!running || Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace walfold::test
