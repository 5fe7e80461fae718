#include "observe/status.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <ostream>

#include "cdc/preflight.h"
#include "checkpoint/store.h"
#include "common/error.h"
#include "common/pg.h"
#include "projections/mongo.h"
#include "queue/job_queue.h"

namespace walfold::observe {
namespace {

// A server that could not be checked: refused credentials or TLS (77) and a connection string
// that cannot be parsed (78) keep their own exit codes, as everywhere (exit_status_for); any
// other failure is "unreachable" (69).
int server_problem_code(const std::exception& e) {
  const int c = exit_status_for(e).code;
  return c == EX_NOPERM || c == EX_CONFIG ? c : kStatusUnreachable;
}

std::string_view view(const redisReply* r) {
  return r && r->str ? std::string_view(r->str, r->len) : std::string_view();
}

nlohmann::json opt(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

std::optional<double> oldest_pending_age_seconds(queue::Redis& redis, const std::string& prefix) {
  redis.append({"ZRANGE", prefix + ":pending", "0", "0"});
  redis.append({"TIME"});
  auto oldest = redis.read_reply();
  auto time = redis.read_reply();
  if (oldest->type != REDIS_REPLY_ARRAY || oldest->elements == 0) return 0.0;
  if (time->type != REDIS_REPLY_ARRAY || time->elements != 2) return std::nullopt;
  // The pending set holds commit LSNs; P:since has when each was first enqueued
  // (queue/job_queue.h).
  auto since = redis.command({"HGET", prefix + ":since", std::string(view(oldest->element[0]))});
  if (since->type != REDIS_REPLY_STRING) return std::nullopt;  // folded meanwhile
  const auto now_ms = std::stoll(std::string(view(time->element[0]))) * 1000 +
                      std::stoll(std::string(view(time->element[1]))) / 1000;
  return std::max(
      0.0, static_cast<double>(now_ms - std::stoll(std::string(view(since.get())))) / 1000.0);
}

int status_command(const Config& cfg, bool json, const std::string& max_lag, std::ostream& out) {
  std::optional<LagLimit> limit;
  if (!max_lag.empty()) {
    limit = parse_lag_limit(max_lag);
    if (!limit)
      throw UsageError("--max-lag '" + max_lag +
                       "' must be bytes (e.g. 64MiB, 1GB, 4096) or seconds (e.g. 30s, 2min)");
  }
  nlohmann::json j;
  std::vector<std::pair<int, std::string>> problems;
  std::optional<double> lag_bytes, lag_seconds;

  // PostgreSQL
  nlohmann::json pg{{"ok", false}};
  try {
    const auto dsn = postgres_conninfo(cfg.postgres);
    PgConn c(dsn, {}, "status");
    pg["address"] = c.address();
    auto slot = cdc::read_slot_any(dsn, cfg.postgres);
    const std::string wal_end = c.scalar("SELECT pg_current_wal_flush_lsn()").value_or("0/0");
    pg["ok"] = true;
    pg["wal_end"] = wal_end;
    nlohmann::json s{{"name", cfg.postgres.slot}, {"exists", slot.exists}};
    if (slot.exists) {
      auto lag =
          c.exec_params("SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), $1::pg_lsn)::bigint",
                        {format_lsn(slot.confirmed_flush)});
      lag_bytes = std::max(0.0, std::stod(std::string(pg_value(*lag, 0, 0))));
      s["wal_status"] = slot.wal_status;
      s["confirmed_lsn"] = format_lsn(slot.confirmed_flush);
      s["active_pid"] = slot.active_pid;
      if (slot.wal_status == "lost")
        problems.push_back({kStatusSlotLost, "replication slot '" + cfg.postgres.slot +
                                                 "' is lost (wal_status 'lost'): changes were "
                                                 "lost to it; run `walfold reconcile --full`"});
    } else {
      problems.push_back({kStatusSlotMissing, "replication slot '" + cfg.postgres.slot +
                                                  "' is missing: run `walfold setup`"});
    }
    pg["slot"] = s;
  } catch (const std::exception& e) {
    pg["error"] = e.what();
    problems.push_back({server_problem_code(e), std::string("postgresql: ") + e.what()});
  }

  // Redis
  nlohmann::json rd{{"ok", false}};
  try {
    queue::Redis redis(cfg.redis);
    rd["address"] = redis.address();
    queue::JobQueue q(redis, queue::queue_prefix(cfg.redis.prefix, cfg.postgres.slot));
    const auto c = q.counts();
    lag_seconds = oldest_pending_age_seconds(redis, q.prefix());
    auto oldest = q.oldest_pending_commit();
    rd["ok"] = true;
    rd["queue"] = {
        {"prefix", q.prefix()},
        {"pending_jobs", c.pending_jobs},
        {"ready_keys", c.ready_keys},
        {"active_keys", c.active_keys},
        {"delayed_keys", c.delayed_keys},
        {"dead_keys", c.dead_keys},
        {"paused", c.paused},
        {"oldest_pending_commit", oldest ? nlohmann::json(format_lsn(*oldest)) : nullptr},
        {"oldest_pending_age_seconds", opt(lag_seconds)},
        {"enqueued_end_lsn", format_lsn(q.enqueued_end_lsn())}};
    auto procs = redis.command({"HGETALL", q.prefix() + ":procs"});
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    nlohmann::json list = nlohmann::json::array();
    for (std::size_t i = 0; i + 1 < procs->elements; i += 2) {
      auto p = nlohmann::json::parse(view(procs->element[i + 1]), nullptr, false);
      if (p.is_discarded() || !p.contains("heartbeat_ms") ||
          now_ms - p["heartbeat_ms"].get<std::int64_t>() > 15000)
        continue;
      list.push_back(std::move(p));
    }
    rd["processes"] = list;
    if (c.dead_keys > 0)
      problems.push_back({kStatusDeadKeys, std::to_string(c.dead_keys) +
                                               " dead key(s) block their accounts: `walfold "
                                               "queue dead list`"});
  } catch (const std::exception& e) {
    rd["error"] = e.what();
    problems.push_back({server_problem_code(e), std::string("redis: ") + e.what()});
  }

  // MongoDB
  nlohmann::json mg{{"ok", false}};
  try {
    projections::MongoPool pool(cfg.mongodb);
    mg["address"] = pool.address();
    mg["database"] = cfg.mongodb.database;
    pool.ping();
    checkpoint::Store store(cfg, pool);
    auto cp = store.load_mongo();
    mg["ok"] = true;
    mg["checkpoint"] = cp ? nlohmann::json{{"lsn", format_lsn(cp->lsn)},
                                           {"saved_ms", cp->saved_at_ms},
                                           {"saved", checkpoint::format_time_ms(cp->saved_at_ms)},
                                           {"loading", cp->loading}}
                          : nlohmann::json(nullptr);
  } catch (const std::exception& e) {
    mg["error"] = e.what();
    problems.push_back({server_problem_code(e), std::string("mongodb: ") + e.what()});
  }

  if (limit) {
    const auto& v = limit->seconds ? lag_seconds : lag_bytes;
    if (v && *v > limit->value)
      problems.push_back({kStatusLagOverLimit, "lag " + std::to_string(static_cast<long long>(*v)) +
                                                   (limit->seconds ? " s" : " bytes") +
                                                   " is over --max-lag " +
                                                   format_lag_limit(*limit)});
  }
  int code = kStatusHealthy;
  // a configuration error > refused credentials > unreachable > slot lost > slot missing >
  // dead keys > lag
  auto severity = [](int c) { return c >= 64 ? 100 + c : c; };
  for (const auto& [c, _] : problems)
    if (severity(c) > severity(code)) code = c;

  if (json) {
    j["healthy"] = problems.empty();
    j["exit_code"] = code;
    j["problems"] = nlohmann::json::array();
    for (const auto& [c, what] : problems) j["problems"].push_back({{"code", c}, {"what", what}});
    j["lag"] = {{"bytes", lag_bytes ? nlohmann::json(static_cast<long long>(*lag_bytes))
                                    : nlohmann::json(nullptr)},
                {"seconds", opt(lag_seconds)}};
    j["postgresql"] = pg;
    j["redis"] = rd;
    j["mongodb"] = mg;
    out << j.dump(2) << "\n";
    return code;
  }
  auto str = [](const nlohmann::json& o, const char* k) {
    return o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : std::string("-");
  };
  out << "postgres      " << str(pg, "address") << (pg["ok"] ? "" : "  UNREACHABLE") << "\n";
  if (pg.contains("slot")) {
    const auto& s = pg["slot"];
    if (s["exists"])
      out << "slot          " << cfg.postgres.slot << " (wal_status " << str(s, "wal_status")
          << ")\n"
          << "confirmed     " << str(s, "confirmed_lsn") << "\n"
          << "wal end       " << str(pg, "wal_end") << "\n"
          << "lag bytes     " << static_cast<long long>(lag_bytes.value_or(0)) << "\n";
    else
      out << "slot          " << cfg.postgres.slot << " (missing: run `walfold setup`)\n";
  }
  out << "redis         " << str(rd, "address") << (rd["ok"] ? "" : "  UNREACHABLE") << "\n";
  if (rd.contains("queue")) {
    const auto& q = rd["queue"];
    out << "pending jobs  " << q["pending_jobs"] << "\n"
        << "ready keys    " << q["ready_keys"] << "\n"
        << "active keys   " << q["active_keys"] << "\n"
        << "delayed keys  " << q["delayed_keys"] << " (retrying after an error)\n"
        << "dead keys     " << q["dead_keys"]
        << (q["dead_keys"].get<long long>() ? " (blocked accounts: walfold queue dead list)" : "")
        << "\n"
        << "paused        " << (q["paused"].get<bool>() ? "yes (walfold queue resume)" : "no")
        << "\n"
        << "oldest commit " << str(q, "oldest_pending_commit");
    if (lag_seconds && q["pending_jobs"].get<long long>() > 0)
      out << " (waiting " << static_cast<long long>(*lag_seconds) << " s)";
    out << "\n"
        << "enqueued thru " << str(q, "enqueued_end_lsn") << "\n";
    for (const auto& p : rd["processes"])
      out << "process       " << str(p, "id") << " " << str(p, "role") << " (v" << str(p, "version")
          << ", confirmed " << str(p, "confirmed_lsn") << ")\n";
  }
  out << "mongodb       " << str(mg, "address") << (mg["ok"] ? "" : "  UNREACHABLE") << "\n";
  if (mg["ok"])
    out << "checkpoint    "
        << (mg["checkpoint"].is_null()
                ? std::string("none saved yet")
                : str(mg["checkpoint"], "lsn") + " (saved " + str(mg["checkpoint"], "saved") + ")")
        << "\n";
  if (problems.empty()) out << "health        OK\n";
  for (const auto& [c, what] : problems) out << "PROBLEM       " << what << " [exit " << c << "]\n";
  return code;
}

}  // namespace walfold::observe
