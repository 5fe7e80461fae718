// `walfold queue`: look at and operate the job queue in Redis (counts by priority and state,
// dead letters, pause/resume). See packaging/walfold.1 and README.md.
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <iomanip>
#include <iostream>
#include <sstream>

#include "common/lsn.h"
#include "common/timestamp.h"
#include "daemon/command.h"
#include "projections/registry.h"
#include "queue/job.h"
#include "queue/job_queue.h"

namespace walfold::daemon {
namespace {

Lsn lsn_from_hex(std::string_view hex) {
  return parse_lsn_key(hex).value_or(0);
}

std::string age(long long ms) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << static_cast<double>(ms) / 1000.0 << " s";
  return os.str();
}

// Printable: control and non-ASCII bytes as \xNN, at most `max` bytes.
std::string printable(std::string_view s, std::size_t max = 120) {
  std::string out;
  static const char* hex = "0123456789abcdef";
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

// One change, named by the projection's table and columns.
std::string summarize(const projections::Projection& p, const queue::Change& c) {
  const auto& row = c.new_row.empty() ? c.old_row : c.new_row;
  const auto& tables = p.tables();
  const auto* spec = c.table < tables.size() ? &tables[c.table] : nullptr;
  std::string s = (spec ? spec->model : "table #" + std::to_string(c.table)) + " " + c.op;
  for (std::size_t f = 0; f < row.size(); ++f) {
    if (row[f].kind == queue::Value::Missing) continue;
    s += " " + (spec && f < spec->columns.size() ? spec->columns[f].name : std::string("?")) + "=";
    s += row[f].kind == queue::Value::Text   ? printable(row[f].text, 40)
         : row[f].kind == queue::Value::Null ? "NULL"
                                             : "(unchanged)";
  }
  return s;
}

void print_stats_json(const queue::JobQueue& q, const queue::Redis& redis,
                      const queue::QueueStats& st, std::ostream& out) {
  const auto& c = st.counts;
  nlohmann::json j{{"prefix", q.prefix()},
                   {"redis", redis.address()},
                   {"paused", c.paused},
                   {"pending_jobs", c.pending_jobs},
                   {"ready_keys", c.ready_keys},
                   {"active_keys", c.active_keys},
                   {"delayed_keys", c.delayed_keys},
                   {"dead_keys", c.dead_keys}};
  j["oldest_pending"] = nullptr;
  if (st.oldest_pending_commit)
    j["oldest_pending"] = {
        {"commit_lsn", format_lsn(*st.oldest_pending_commit)},
        {"key",
         st.oldest_pending_key ? nlohmann::json(*st.oldest_pending_key) : nlohmann::json(nullptr)},
        {"age_seconds",
         st.oldest_pending_age_ms
             ? nlohmann::json(static_cast<double>(*st.oldest_pending_age_ms) / 1000.0)
             : nlohmann::json(nullptr)}};
  j["by_priority"] = nlohmann::json::array();
  for (const auto& [p, k] : st.by_priority)
    j["by_priority"].push_back({{"priority", p},
                                {"ready", k.ready},
                                {"active", k.active},
                                {"delayed", k.delayed},
                                {"dead", k.dead},
                                {"jobs", k.jobs}});
  out << j.dump(2) << "\n";
}

void print_stats_text(const queue::JobQueue& q, const queue::Redis& redis,
                      const queue::QueueStats& st, std::ostream& out) {
  const auto& c = st.counts;
  out << "queue          " << q.prefix() << " at " << redis.address()
      << (c.paused ? "  PAUSED (walfold queue resume)" : "") << "\n"
      << "pending jobs   " << c.pending_jobs << "\n"
      << "keys           ready " << c.ready_keys << ", active " << c.active_keys << ", delayed "
      << c.delayed_keys << ", dead " << c.dead_keys << "\n"
      << "oldest job     ";
  if (st.oldest_pending_commit) {
    out << "commit " << format_lsn(*st.oldest_pending_commit);
    if (st.oldest_pending_key) out << " key " << *st.oldest_pending_key;
    if (st.oldest_pending_age_ms) out << ", enqueued " << age(*st.oldest_pending_age_ms) << " ago";
    out << "\n";
  } else {
    out << "-\n";
  }
  out << "\npriority   ready  active delayed    dead      jobs\n";
  for (const auto& [p, k] : st.by_priority)
    out << std::setw(8) << p << std::setw(8) << k.ready << std::setw(8) << k.active << std::setw(8)
        << k.delayed << std::setw(8) << k.dead << std::setw(10) << k.jobs << "\n";
  if (c.dead_keys > 0)
    out << "\n"
        << c.dead_keys
        << " dead key(s) block their ordering keys' later jobs: walfold queue dead list\n";
}

int set_paused(queue::JobQueue& q, bool pause, std::ostream& out) {
  q.set_paused(pause);
  out << "queue " << q.prefix()
      << (pause ? " paused: workers claim nothing (the reader "
                  "goes on enqueueing); `walfold queue resume`"
                : " resumed")
      << "\n";
  spdlog::info("queue {} {}", q.prefix(), pause ? "paused" : "resumed");
  return kExitOk;
}

int list_dead(queue::JobQueue& q, std::ostream& out) {
  auto dead = q.dead_letters();
  if (dead.empty()) {
    out << "no dead letters\n";
    return kExitOk;
  }
  out << "key                  attempts  commit LSN         jobs  reason\n";
  for (const auto& d : dead)
    out << std::left << std::setw(20) << d.key << std::right << std::setw(9) << d.attempts << "  "
        << std::left << std::setw(17)
        << (d.lsn.empty() ? std::string("?") : format_lsn(lsn_from_hex(d.lsn))) << std::right
        << std::setw(6) << d.jobs << "  " << printable(d.reason, 200) << "\n";
  return kExitOk;
}

int inspect_dead(queue::JobQueue& q, const projections::Projection& projection,
                 const std::string& key, int jobs, std::ostream& out) {
  auto d = q.dead_letter(key);
  if (!d) {
    out << "key " << key << " is not dead\n";
    return kExitAttention;
  }
  auto now = q.redis_time_ms();
  out << "key        " << d->key << "\n"
      << "attempts   " << d->attempts << "\n"
      << "dead since " << age(now - d->at_ms) << " ago\n"
      << "reason     " << printable(d->reason, 2000) << "\n"
      << "jobs       " << d->jobs << " (the first is the one that failed; the others wait)\n";
  int i = 0;
  for (const auto& e : q.entries(key, jobs)) {
    out << "\n#" << ++i << " commit " << format_lsn(e.commit_lsn) << " priority " << e.priority
        << ", enqueued " << age(now - e.enqueued_ms) << " ago\n";
    try {
      auto job = queue::decode_job(e.body);
      out << "   committed " << format_timestamp_us(job.commit_time_us) << ", "
          << job.changes.size() << " change(s)\n";
      for (const auto& c : job.changes) out << "   " << summarize(projection, c) << "\n";
    } catch (const DataError& err) {
      out << "   undecodable (" << err.what() << "): " << printable(e.body) << "\n";
    }
  }
  if (d->jobs > i) out << "\n(" << d->jobs - i << " more; --jobs N shows more)\n";
  return kExitOk;
}

// One dead key back in the queue; false when it is not dead.
bool retry_one(queue::JobQueue& q, const std::string& k, std::ostream& out) {
  if (!q.retry_dead(k)) {
    out << "key " << k << " is not dead\n";
    return false;
  }
  out << "key " << k << " is back in the queue\n";
  spdlog::info("queue: dead key {} retried by an operator", k);
  return true;
}

// One dead key's jobs dropped; false when it is not dead.
bool purge_one(queue::JobQueue& q, const std::string& k, std::ostream& out) {
  auto n = q.purge_dead(k);
  if (n < 0) {
    out << "key " << k << " is not dead\n";
    return false;
  }
  out << "key " << k << ": " << n
      << " job(s) dropped; its changes are missing from the read model until "
         "`walfold reconcile --repair`\n";
  spdlog::warn(
      "queue: dead key {} purged by an operator: {} job(s) dropped; the read model "
      "misses them until `walfold reconcile --repair`",
      k, n);
  return true;
}

class QueueCommand : public Command {
 public:
  QueueCommand(CLI::App& queue, Context& ctx);
  int run(const Context& ctx) override;

 private:
  int retry_or_purge(queue::JobQueue& q, std::ostream& out);

  CLI::App *stats_, *pause_, *resume_, *list_, *inspect_, *retry_, *purge_;
  std::string key_;
  bool all_ = false, yes_ = false, json_ = false;
  int jobs_ = 20;
};

QueueCommand::QueueCommand(CLI::App& queue, Context& ctx) {
  add_config_option(queue, ctx);
  queue.require_subcommand(1);
  auto sub = [&](CLI::App* parent, const char* name, const char* help) {
    auto* s = parent->add_subcommand(name, help);
    s->fallthrough();  // -c may come after the subcommand too
    return s;
  };
  stats_ = sub(&queue, "stats",
               "Keys by priority class (of their head job) and state, pending jobs, oldest age");
  stats_->add_flag("--json", json_, "One JSON document instead of the table");
  pause_ = sub(&queue, "pause", "Workers claim nothing until `queue resume`; the reader goes on");
  resume_ = sub(&queue, "resume", "Undo `queue pause`");
  auto* dead = sub(&queue, "dead", "Dead letters: keys whose head job could not be folded");
  dead->require_subcommand(1);
  list_ = sub(dead, "list", "Every dead key with its attempts, LSN and reason");
  inspect_ = sub(dead, "inspect", "One dead key: reason, attempts and its jobs, decoded");
  inspect_->add_option("key", key_, "Ordering key, e.g. a:42")->required();
  inspect_->add_option("--jobs", jobs_, "Jobs to show")->capture_default_str();
  retry_ = sub(dead, "retry", "Put dead keys back in the queue (after fixing the cause)");
  retry_->add_option("key", key_, "Ordering key");
  retry_->add_flag("--all", all_, "Every dead key");
  purge_ = sub(dead, "purge",
               "Drop dead keys' jobs: their changes are missing from the read model until "
               "`walfold reconcile --repair`");
  purge_->add_option("key", key_, "Ordering key");
  purge_->add_flag("--all", all_, "Every dead key");
  purge_->add_flag("--yes", yes_, "Confirm that the changes are dropped");
}

int QueueCommand::run(const Context& ctx) {
  const Config cfg = ctx.load_config();
  std::ostream& out = std::cout;
  queue::Redis redis(cfg.redis);
  queue::JobQueue q(redis, queue::queue_prefix(cfg.redis.prefix, cfg.postgres.slot),
                    queue::queue_options(cfg));
  // A queue in another format (another walfold version wrote it) is refused before anything is
  // read or changed: DataError, exit 65.
  q.check_format();
  if (*stats_) {
    const auto st = q.stats();
    json_ ? print_stats_json(q, redis, st, out) : print_stats_text(q, redis, st, out);
    return kExitOk;
  }
  if (*pause_ || *resume_) return set_paused(q, static_cast<bool>(*pause_), out);
  if (*list_) return list_dead(q, out);
  if (*inspect_) return inspect_dead(q, *projections::projection_for(cfg), key_, jobs_, out);
  if (*retry_ || *purge_) return retry_or_purge(q, out);
  return exit_code_of<UsageError>();
}

int QueueCommand::retry_or_purge(queue::JobQueue& q, std::ostream& out) {
  if (all_ == !key_.empty()) {
    out << "name one dead key or --all\n";
    return exit_code_of<UsageError>();
  }
  std::vector<std::string> keys;
  if (all_)
    for (const auto& d : q.dead_letters()) keys.push_back(d.key);
  else
    keys.push_back(key_);
  if (*purge_ && !yes_) {
    out << "purge drops every job of " << (all_ ? "every dead key" : "key " + key_)
        << " and lets the checkpoint move past them: those changes will be MISSING from the "
           "read model until `walfold reconcile --repair` (or --full). Add --yes to do it.\n";
    return exit_code_of<UsageError>();
  }
  int missing = 0;
  for (const auto& k : keys)
    if (!(*retry_ ? retry_one(q, k, out) : purge_one(q, k, out))) ++missing;
  if (all_ && keys.empty()) out << "no dead letters\n";
  return missing ? kExitAttention : kExitOk;
}

}  // namespace

std::unique_ptr<Command> make_queue_command(CLI::App& sub, Context& ctx) {
  return std::make_unique<QueueCommand>(sub, ctx);
}

}  // namespace walfold::daemon
