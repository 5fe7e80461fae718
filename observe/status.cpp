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

bool is_live_process(const nlohmann::json& entry, std::int64_t now_ms) {
  return !entry.is_discarded() && entry.contains("heartbeat_ms") &&
         entry["heartbeat_ms"].is_number() &&
         now_ms - entry["heartbeat_ms"].get<std::int64_t>() <= kRegistryTtlMs;
}

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

namespace {

// What `walfold status` found: one JSON object per server, the lag, and the problems with their
// exit codes.
struct Findings {
  nlohmann::json pg{{"ok", false}}, rd{{"ok", false}}, mg{{"ok", false}};
  std::vector<std::pair<int, std::string>> problems;
  std::optional<double> lag_bytes, lag_seconds;
};

void check_postgres(const Config& cfg, Findings& f) {
  auto& pg = f.pg;
  try {
    const auto dsn = postgres_conninfo(cfg.postgres);
    PgConn c(dsn, {}, "status");
    pg["address"] = c.address();
    auto slot = cdc::read_slot_any(dsn, cfg.postgres.slot);
    const std::string wal_end = c.scalar("SELECT pg_current_wal_flush_lsn()").value_or("0/0");
    pg["ok"] = true;
    pg["wal_end"] = wal_end;
    nlohmann::json s{{"name", cfg.postgres.slot}, {"exists", slot.exists}};
    if (slot.exists) {
      auto lag =
          c.exec_params("SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), $1::pg_lsn)::bigint",
                        {format_lsn(slot.confirmed_flush)});
      f.lag_bytes = std::max(0.0, std::stod(std::string(pg_value(*lag, 0, 0))));
      s["wal_status"] = slot.wal_status;
      s["confirmed_lsn"] = format_lsn(slot.confirmed_flush);
      s["active_pid"] = slot.active_pid;
      if (slot.wal_status == "lost")
        f.problems.push_back({kStatusSlotLost, "replication slot '" + cfg.postgres.slot +
                                                   "' is lost (wal_status 'lost'): changes were "
                                                   "lost to it; run `walfold reconcile --full`"});
    } else {
      f.problems.push_back({kStatusSlotMissing, "replication slot '" + cfg.postgres.slot +
                                                    "' is missing: run `walfold setup`"});
    }
    pg["slot"] = s;
  } catch (const std::exception& e) {
    pg["error"] = e.what();
    f.problems.push_back({server_problem_code(e), std::string("postgresql: ") + e.what()});
  }
}

// The processes that heartbeat into the queue's registry within the last 15 s.
nlohmann::json live_processes(queue::Redis& redis, const std::string& prefix) {
  auto procs = redis.command({"HGETALL", prefix + ":procs"});
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  nlohmann::json list = nlohmann::json::array();
  if (procs->type != REDIS_REPLY_ARRAY) return list;
  for (std::size_t i = 0; i + 1 < procs->elements; i += 2) {
    auto p = nlohmann::json::parse(view(procs->element[i + 1]), nullptr, false);
    if (is_live_process(p, now_ms)) list.push_back(std::move(p));
  }
  return list;
}

void check_redis(const Config& cfg, Findings& f) {
  auto& rd = f.rd;
  try {
    queue::Redis redis(cfg.redis);
    rd["address"] = redis.address();
    queue::JobQueue q(redis, queue::queue_prefix(cfg.redis.prefix, cfg.postgres.slot));
    const auto c = q.counts();
    f.lag_seconds = oldest_pending_age_seconds(redis, q.prefix());
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
        {"oldest_pending_age_seconds", opt(f.lag_seconds)},
        {"enqueued_end_lsn", format_lsn(q.enqueued_end_lsn())}};
    rd["processes"] = live_processes(redis, q.prefix());
    if (c.dead_keys > 0)
      f.problems.push_back({kStatusDeadKeys, std::to_string(c.dead_keys) +
                                                 " dead key(s) block their ordering keys' later "
                                                 "jobs: `walfold queue dead list`"});
  } catch (const std::exception& e) {
    rd["error"] = e.what();
    f.problems.push_back({server_problem_code(e), std::string("redis: ") + e.what()});
  }
}

void check_mongo(const Config& cfg, Findings& f) {
  auto& mg = f.mg;
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
    f.problems.push_back({server_problem_code(e), std::string("mongodb: ") + e.what()});
  }
}

void check_lag(const std::optional<LagLimit>& limit, Findings& f) {
  if (!limit) return;
  const auto& v = limit->seconds ? f.lag_seconds : f.lag_bytes;
  if (v && *v > limit->value)
    f.problems.push_back({kStatusLagOverLimit, "lag " + std::to_string(static_cast<long long>(*v)) +
                                                   (limit->seconds ? " s" : " bytes") +
                                                   " is over --max-lag " +
                                                   format_lag_limit(*limit)});
}

// The most severe problem's code: a configuration error > refused credentials > unreachable >
// slot lost > slot missing > dead keys > lag.
int exit_code_of(const Findings& f) {
  int code = kStatusHealthy;
  auto severity = [](int c) { return c >= 64 ? 100 + c : c; };
  for (const auto& [c, _] : f.problems)
    if (severity(c) > severity(code)) code = c;
  return code;
}

void print_json(const Findings& f, int code, std::ostream& out) {
  nlohmann::json j;
  j["healthy"] = f.problems.empty();
  j["exit_code"] = code;
  j["problems"] = nlohmann::json::array();
  for (const auto& [c, what] : f.problems) j["problems"].push_back({{"code", c}, {"what", what}});
  j["lag"] = {{"bytes", f.lag_bytes ? nlohmann::json(static_cast<long long>(*f.lag_bytes))
                                    : nlohmann::json(nullptr)},
              {"seconds", opt(f.lag_seconds)}};
  j["postgresql"] = f.pg;
  j["redis"] = f.rd;
  j["mongodb"] = f.mg;
  out << j.dump(2) << "\n";
}

std::string str(const nlohmann::json& o, const char* k) {
  return o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : std::string("-");
}

void print_queue(const Findings& f, std::ostream& out) {
  const auto& q = f.rd["queue"];
  out << "pending jobs  " << q["pending_jobs"] << "\n"
      << "ready keys    " << q["ready_keys"] << "\n"
      << "active keys   " << q["active_keys"] << "\n"
      << "delayed keys  " << q["delayed_keys"] << " (retrying after an error)\n"
      << "dead keys     " << q["dead_keys"]
      << (q["dead_keys"].get<long long>() ? " (blocked keys: walfold queue dead list)" : "") << "\n"
      << "paused        " << (q["paused"].get<bool>() ? "yes (walfold queue resume)" : "no") << "\n"
      << "oldest commit " << str(q, "oldest_pending_commit");
  if (f.lag_seconds && q["pending_jobs"].get<long long>() > 0)
    out << " (waiting " << static_cast<long long>(*f.lag_seconds) << " s)";
  out << "\n"
      << "enqueued thru " << str(q, "enqueued_end_lsn") << "\n";
  for (const auto& p : f.rd["processes"])
    out << "process       " << str(p, "id") << " " << str(p, "role") << " (v" << str(p, "version")
        << ", confirmed " << str(p, "confirmed_lsn") << ")\n";
}

void print_text(const Config& cfg, const Findings& f, std::ostream& out) {
  const auto &pg = f.pg, &rd = f.rd, &mg = f.mg;
  out << "postgres      " << str(pg, "address") << (pg["ok"] ? "" : "  UNREACHABLE") << "\n";
  if (pg.contains("slot")) {
    const auto& s = pg["slot"];
    if (s["exists"])
      out << "slot          " << cfg.postgres.slot << " (wal_status " << str(s, "wal_status")
          << ")\n"
          << "confirmed     " << str(s, "confirmed_lsn") << "\n"
          << "wal end       " << str(pg, "wal_end") << "\n"
          << "lag bytes     " << static_cast<long long>(f.lag_bytes.value_or(0)) << "\n";
    else
      out << "slot          " << cfg.postgres.slot << " (missing: run `walfold setup`)\n";
  }
  out << "redis         " << str(rd, "address") << (rd["ok"] ? "" : "  UNREACHABLE") << "\n";
  if (rd.contains("queue")) print_queue(f, out);
  out << "mongodb       " << str(mg, "address") << (mg["ok"] ? "" : "  UNREACHABLE") << "\n";
  if (mg["ok"])
    out << "checkpoint    "
        << (mg["checkpoint"].is_null()
                ? std::string("none saved yet")
                : str(mg["checkpoint"], "lsn") + " (saved " + str(mg["checkpoint"], "saved") + ")")
        << "\n";
  if (f.problems.empty()) out << "health        OK\n";
  for (const auto& [c, what] : f.problems)
    out << "PROBLEM       " << what << " [exit " << c << "]\n";
}

}  // namespace

int status_command(const Config& cfg, bool json, const std::string& max_lag, std::ostream& out) {
  std::optional<LagLimit> limit;
  if (!max_lag.empty()) {
    limit = parse_lag_limit(max_lag);
    if (!limit)
      throw UsageError("--max-lag '" + max_lag +
                       "' must be bytes (e.g. 64MiB, 1GB, 4096) or seconds (e.g. 30s, 2min)");
  }
  Findings f;
  check_postgres(cfg, f);
  check_redis(cfg, f);
  check_mongo(cfg, f);
  check_lag(limit, f);
  const int code = exit_code_of(f);
  if (json)
    print_json(f, code, out);
  else
    print_text(cfg, f, out);
  return code;
}

}  // namespace walfold::observe
