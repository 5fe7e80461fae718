#include "queue/redis.h"

#include <cstring>

#include "common/error.h"
#include "common/progress.h"

namespace walfold::queue {
namespace {

// SHA-1 for script ids (Redis identifies scripts by the SHA-1 of their body).
std::string sha1_hex(const std::string& data) {
  std::uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string msg = data;
  std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
  msg.push_back(static_cast<char>(0x80));
  while (msg.size() % 64 != 56) msg.push_back(0);
  for (int i = 7; i >= 0; --i) msg.push_back(static_cast<char>((bits >> (i * 8)) & 0xff));
  auto rol = [](std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
  for (std::size_t chunk = 0; chunk < msg.size(); chunk += 64) {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const unsigned char*>(msg.data() + chunk + i * 4);
      w[i] = (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) |
             (std::uint32_t(p[2]) << 8) | p[3];
    }
    for (int i = 16; i < 80; ++i) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6;
      }
      std::uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rol(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  char out[41];
  for (int i = 0; i < 5; ++i) std::snprintf(out + i * 8, 9, "%08x", h[i]);
  return std::string(out, 40);
}

// Error replies that no retry can fix: the server refused walfold's credentials (AUTH failed,
// a command sent without the required AUTH) or the ACL user may not run a command.
bool is_auth_refusal(std::string_view reply) {
  for (std::string_view p : {"WRONGPASS", "NOAUTH", "NOPERM", "ERR invalid password",
                             "ERR AUTH <password> called without", "ERR Client sent AUTH"})
    if (reply.substr(0, p.size()) == p) return true;
  return false;
}

// What an error reply means, by its first word (Redis's error code: RESP "simple errors").
enum class ReplyErrorKind {
  Auth,       // credentials refused: exit 77, never retried
  Transient,  // the same call succeeds later, or on the server a new connection finds (a
              // failover): UnavailableError, retried by the caller's backoff
  Other,      // asking again gives the same answer (RedisReplyError)
};

ReplyErrorKind classify_reply_error(std::string_view reply, std::string_view code) {
  if (is_auth_refusal(reply)) return ReplyErrorKind::Auth;
  // LOADING: the dataset is being loaded after a restart; BUSY: a script runs past its time
  // limit; TRYAGAIN: a multi-key call during resharding; OOM: maxmemory reached (workers
  // draining the queue free it); MISCONF: the last RDB save failed (writes refused until one
  // succeeds); READONLY, MASTERDOWN, CLUSTERDOWN: this server cannot take writes now (a
  // replica after a failover, or its primary is gone).
  for (std::string_view c :
       {"LOADING", "BUSY", "TRYAGAIN", "OOM", "MISCONF", "READONLY", "MASTERDOWN", "CLUSTERDOWN"})
    if (code == c) return ReplyErrorKind::Transient;
  return ReplyErrorKind::Other;
}

}  // namespace

RedisScript::RedisScript(std::string name, std::string body)
    : name_(std::move(name)), body_(std::move(body)), sha_(sha1_hex(body_)) {}

Redis::Redis(const RedisConfig& cfg) : cfg_(cfg) {
  address_ = cfg.unix_socket.empty() ? cfg.host + ":" + std::to_string(cfg.port) : cfg.unix_socket;
  if (!cfg.password_file.empty()) password_ = read_secret_file(cfg.password_file);
  connect();
}

void Redis::connect() {
  ServerWait wait(Server::Redis);
  timeval tv{5, 0};
  redisContext* c = cfg_.unix_socket.empty()
                        ? redisConnectWithTimeout(cfg_.host.c_str(), cfg_.port, tv)
                        : redisConnectUnixWithTimeout(cfg_.unix_socket.c_str(), tv);
  if (c == nullptr) throw UnavailableError("redis at " + address_ + ": cannot allocate a context");
  if (c->err) {
    std::string msg = "redis at " + address_ + " is unreachable: " + c->errstr;
    redisFree(c);
    throw UnavailableError(msg);
  }
  ctx_.reset(c);
  timeval rw{30, 0};
  redisSetTimeout(c, rw);
  // AUTH [username] password (an ACL user, or the default user's requirepass); the error reply
  // names the command only, never its arguments.
  if (!cfg_.username.empty())
    command({"AUTH", cfg_.username, password_});
  else if (!password_.empty())
    command({"AUTH", password_});
  if (cfg_.db != 0) command({"SELECT", std::to_string(cfg_.db)});
}

void Redis::reconnect() {
  ctx_.reset();
  connect();
}

Reply Redis::checked(redisReply* r, std::string_view what) {
  if (r == nullptr) {
    std::string msg = "redis at " + address_ + ": " + std::string(what) +
                      " failed: " + (ctx_ && ctx_->err ? ctx_->errstr : "connection lost");
    ctx_.reset();  // a broken context is useless; the next call reconnects
    throw UnavailableError(msg);
  }
  Reply reply(r);
  if (reply->type != REDIS_REPLY_ERROR) return reply;
  const std::string_view text(reply->str, reply->len);
  const std::string code(text.substr(0, text.find(' ')));
  const std::string msg =
      "redis at " + address_ + ": " + std::string(what) + ": " + std::string(text);
  switch (classify_reply_error(text, code)) {
    case ReplyErrorKind::Auth:
      throw AuthError("redis at " + address_ + " refused walfold's credentials (check " +
                      "redis.password_file): " + std::string(what) + ": " + std::string(text));
    case ReplyErrorKind::Transient:
      // Dropped as a lost connection is: replies still due on it (a pipeline) go with it, and
      // the next call connects again (after a failover, to whatever the address is now).
      ctx_.reset();
      throw UnavailableError(msg);
    case ReplyErrorKind::Other:
      break;
  }
  throw RedisReplyError(code, msg);
  return reply;
}

Reply Redis::command(const std::vector<std::string_view>& argv) {
  ServerWait wait(Server::Redis);
  if (!ctx_) connect();
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (auto a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(ctx_.get(), static_cast<int>(argv.size()), ptrs.data(), lens.data()));
  return checked(r, argv.empty() ? "command" : argv[0]);
}

void Redis::append(const std::vector<std::string_view>& argv) {
  if (!ctx_) connect();
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (auto a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(argv.size()), ptrs.data(), lens.data()) !=
      REDIS_OK)
    throw UnavailableError("redis at " + address_ + ": cannot queue a pipelined command");
}

void Redis::send() {
  ServerWait wait(Server::Redis);
  int done = 0;
  while (!done) {
    if (redisBufferWrite(ctx_.get(), &done) != REDIS_OK) {
      std::string msg =
          "redis at " + address_ + ": sending failed: " + (ctx_->errstr[0] ? ctx_->errstr : "?");
      ctx_.reset();
      throw UnavailableError(msg);
    }
  }
}

Reply Redis::read_reply() {
  ServerWait wait(Server::Redis);
  void* r = nullptr;
  if (redisGetReply(ctx_.get(), &r) != REDIS_OK) r = nullptr;
  return checked(static_cast<redisReply*>(r), "pipelined command");
}

Reply Redis::eval(const RedisScript& script, const std::vector<std::string_view>& keys,
                  const std::vector<std::string_view>& args) {
  std::string nkeys = std::to_string(keys.size());
  std::vector<std::string_view> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha());
  argv.push_back(nkeys);
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  try {
    return command(argv);
  } catch (const RedisReplyError& e) {
    if (e.code != "NOSCRIPT")
      throw RedisReplyError(e.code, std::string(e.what()) + " (script " + script.name() + ")");
  }
  argv[0] = "EVAL";
  argv[1] = script.body();
  return command(argv);
}

std::string reply_to_string(const redisReply* r) {
  if (r == nullptr) return "(null)";
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      return std::string(r->str, r->len);
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_ARRAY: {
      std::string s;
      for (size_t i = 0; i < r->elements; ++i) {
        if (i) s += '\n';
        s += reply_to_string(r->element[i]);
      }
      return s;
    }
  }
  return "?";
}

namespace reply {
namespace {
const char* type_name(int type) {
  switch (type) {
    case REDIS_REPLY_STRING:
      return "a string";
    case REDIS_REPLY_STATUS:
      return "a status";
    case REDIS_REPLY_ERROR:
      return "an error";
    case REDIS_REPLY_INTEGER:
      return "an integer";
    case REDIS_REPLY_NIL:
      return "nil";
    case REDIS_REPLY_ARRAY:
      return "an array";
  }
  return "an unknown type";
}
[[noreturn]] void unexpected(const redisReply* r, std::string_view cmd, const std::string& want) {
  throw RedisReplyError("WALFOLD-REPLY", "redis: " + std::string(cmd) + ": expected " + want +
                                             " in the reply, got " +
                                             (r ? type_name(r->type) : "no reply"));
}
}  // namespace

const redisReply& array(const redisReply* r, std::string_view cmd, std::size_t at_least) {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) unexpected(r, cmd, "an array");
  if (r->elements < at_least)
    throw RedisReplyError("WALFOLD-REPLY", "redis: " + std::string(cmd) +
                                               ": expected an array of " +
                                               std::to_string(at_least) + " elements, got " +
                                               std::to_string(r->elements));
  return *r;
}

const redisReply* at(const redisReply* r, std::size_t i, std::string_view cmd) {
  return array(r, cmd, i + 1).element[i];
}

long long integer(const redisReply* r, std::string_view cmd) {
  if (r == nullptr || r->type != REDIS_REPLY_INTEGER) unexpected(r, cmd, "an integer");
  return r->integer;
}

std::string_view text(const redisReply* r, std::string_view cmd) {
  if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
    unexpected(r, cmd, "a string");
  return {r->str, r->len};
}

std::optional<std::string_view> text_or_nil(const redisReply* r, std::string_view cmd) {
  if (r != nullptr && r->type == REDIS_REPLY_NIL) return std::nullopt;
  if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
    unexpected(r, cmd, "a string or nil");
  return std::string_view(r->str, r->len);
}
}  // namespace reply

}  // namespace walfold::queue
