// queue::reply: checked access to hiredis replies (issue #13). A reply of another type than the
// one a command must answer is a RedisReplyError naming the command and the expected type, never
// a read of the wrong union member.
#include <gtest/gtest.h>

#include <string>

#include "queue/redis.h"

namespace walfold::queue {
namespace {

redisReply make(int type) {
  redisReply r{};
  r.type = type;
  return r;
}

std::string error_of(const auto& call) {
  try {
    call();
  } catch (const RedisReplyError& e) {
    EXPECT_EQ(e.code, "WALFOLD-REPLY");
    return e.what();
  }
  ADD_FAILURE() << "no RedisReplyError";
  return {};
}

TEST(RedisReply, EachAccessChecksTheTypeAndNamesTheCommand) {
  char text[] = "12";
  redisReply str = make(REDIS_REPLY_STRING);
  str.str = text;
  str.len = 2;
  redisReply num = make(REDIS_REPLY_INTEGER);
  num.integer = 7;
  redisReply nil = make(REDIS_REPLY_NIL);
  redisReply* parts[] = {&str, &num};
  redisReply arr = make(REDIS_REPLY_ARRAY);
  arr.element = parts;
  arr.elements = 2;

  EXPECT_EQ(reply::text(&str, "GET"), "12");
  EXPECT_EQ(reply::integer(&num, "INCR"), 7);
  EXPECT_EQ(reply::text_or_nil(&nil, "HGET"), std::nullopt);
  EXPECT_EQ(reply::text_or_nil(&str, "HGET"), std::optional<std::string_view>("12"));
  EXPECT_EQ(reply::at(&arr, 1, "claim"), &num);
  EXPECT_EQ(reply::array(&arr, "claim", 2).elements, 2u);

  auto m = error_of([&] { reply::integer(&str, "claim"); });
  EXPECT_NE(m.find("claim"), std::string::npos) << m;
  EXPECT_NE(m.find("expected an integer"), std::string::npos) << m;
  EXPECT_NE(m.find("got a string"), std::string::npos) << m;
  m = error_of([&] { reply::text(&num, "LRANGE"); });
  EXPECT_NE(m.find("LRANGE: expected a string"), std::string::npos) << m;
  m = error_of([&] { reply::text(&nil, "LRANGE"); });
  EXPECT_NE(m.find("got nil"), std::string::npos) << m;
  m = error_of([&] { reply::text_or_nil(&arr, "HGET meta"); });
  EXPECT_NE(m.find("expected a string or nil"), std::string::npos) << m;
  m = error_of([&] { reply::array(&num, "ack"); });
  EXPECT_NE(m.find("ack: expected an array"), std::string::npos) << m;
  m = error_of([&] { reply::at(&arr, 2, "epoch"); });
  EXPECT_NE(m.find("epoch: expected an array of 3 elements, got 2"), std::string::npos) << m;
  m = error_of([&] { reply::integer(nullptr, "TIME"); });
  EXPECT_NE(m.find("no reply"), std::string::npos) << m;
}

}  // namespace
}  // namespace walfold::queue
