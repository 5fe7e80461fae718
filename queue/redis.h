// A small RAII layer over hiredis: one connection, argv-style commands, every error mapped to a
// walfold exception that names the server address. Scripts are loaded by SHA and re-sent on
// NOSCRIPT (Redis restarted or failed over and lost its script cache).
#pragma once

#include <hiredis/hiredis.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace walfold::queue {

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// An error reply Redis will give again if asked again (a script's own refusal, a wrong type, an
// unknown command): `code` is the reply's first word (ERR, WRONGTYPE, NOSCRIPT, WALFOLD...).
// Replies that pass with time (LOADING, BUSY, OOM, READONLY...) are UnavailableError instead,
// and credential refusals AuthError: the table is `classify_reply_error` in redis.cpp.
struct RedisReplyError : std::runtime_error {
  RedisReplyError(std::string code, const std::string& what)
      : std::runtime_error(what), code(std::move(code)) {}
  std::string code;
};

// Checked access to a reply's parts (issue #13: no `->str`, `->integer` or `->element[i]` read
// without its type checked). Each throws RedisReplyError (code "WALFOLD-REPLY") naming the
// command and the type it expected, when the reply is anything else.
namespace reply {
// An array of at least `at_least` elements.
const redisReply& array(const redisReply* r, std::string_view cmd, std::size_t at_least = 0);
// Element i of an array (checked as one, and i in range).
const redisReply* at(const redisReply* r, std::size_t i, std::string_view cmd);
long long integer(const redisReply* r, std::string_view cmd);
// A bulk string or a status reply.
std::string_view text(const redisReply* r, std::string_view cmd);
// The same, or nothing for a nil.
std::optional<std::string_view> text_or_nil(const redisReply* r, std::string_view cmd);
}  // namespace reply

class RedisScript {
 public:
  RedisScript(std::string name, std::string body);
  const std::string& name() const { return name_; }
  const std::string& body() const { return body_; }
  const std::string& sha() const { return sha_; }

 private:
  std::string name_, body_, sha_;
};

class Redis {
 public:
  explicit Redis(const RedisConfig& cfg);
  const std::string& address() const { return address_; }

  // Runs one command; throws UnavailableError on connection problems and on error replies that
  // pass with time, AuthError on a credential refusal, RedisReplyError on any other error reply
  // (all name the address and the command).
  Reply command(const std::vector<std::string_view>& argv);
  // EVALSHA with fallback to EVAL on NOSCRIPT.
  Reply eval(const RedisScript& script, const std::vector<std::string_view>& keys,
             const std::vector<std::string_view>& args);

  // Pipelining: append, then read replies in order. send() writes what was appended to the
  // socket without waiting for the replies.
  void append(const std::vector<std::string_view>& argv);
  void send();
  Reply read_reply();

  void reconnect();

 private:
  void connect();
  Reply checked(redisReply* r, std::string_view what);
  RedisConfig cfg_;
  std::string address_;
  std::string password_;
  std::unique_ptr<redisContext, void (*)(redisContext*)> ctx_{nullptr, redisFree};
};

// Renders a reply for messages and the CLI.
std::string reply_to_string(const redisReply* r);

}  // namespace walfold::queue
