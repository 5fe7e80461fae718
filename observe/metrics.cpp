// Prometheus text exposition format 0.0.4 of an Observer: names and units by Prometheus
// conventions (walfold_..._total counters, _seconds, _bytes). Reference: packaging/walfold.1.
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "observe/observer.h"

namespace walfold::observe {
namespace {

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0)  // integral: exact digits
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

class Writer {
 public:
  void family(const char* name, const char* type, const char* help) {
    os_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  }
  void value(const std::string& name, double v, const std::string& labels = "") {
    os_ << name;
    if (!labels.empty()) os_ << '{' << labels << '}';
    os_ << ' ' << number(v) << '\n';
  }
  void one(const char* name, const char* type, const char* help, double v) {
    family(name, type, help);
    value(name, v);
  }
  std::string str() const { return os_.str(); }

 private:
  std::ostringstream os_;
};

std::string label(const char* k, const std::string& v) {
  return std::string(k) + "=\"" + escape_label(v) + "\"";
}

// walfold's identity: version, role, slot, start time, standby state, sample time.
void write_identity(Writer& w, const Observer& o, const Sample& s) {
  const auto& p = o.progress();
  w.family("walfold_build_info", "gauge", "walfold's version and this process's role (value 1)");
  w.value("walfold_build_info", 1,
          label("version", o.process().version) + "," + label("role", o.role()) + "," +
              label("slot", o.config().postgres.slot));
  w.one("walfold_process_start_time_seconds", "gauge", "Start time of the process (Unix seconds)",
        static_cast<double>(o.process().started_ms) / 1000.0);
  w.one("walfold_standby", "gauge",
        "1 while this reader waits as a standby (another reader streams the slot)",
        p.standby.load() ? 1 : 0);
  w.one("walfold_sample_timestamp_seconds", "gauge",
        "When the cached servers' values (lag, queue, checkpoint) were read (Unix seconds)",
        static_cast<double>(s.at_ms) / 1000.0);

  w.family("walfold_server_up", "gauge",
           "1 when the last probe of the server succeeded (postgresql, redis, mongodb)");
  w.value("walfold_server_up", s.postgresql.ok ? 1 : 0, label("server", "postgresql"));
  w.value("walfold_server_up", s.redis.ok ? 1 : 0, label("server", "redis"));
  w.value("walfold_server_up", s.mongodb.ok ? 1 : 0, label("server", "mongodb"));
}

// The servers, the slot and the positions along the data path (LSNs as numbers).
void write_positions(Writer& w, const Sample& s, const Progress& p) {
  w.one("walfold_slot_present", "gauge", "1 when the replication slot exists",
        s.slot_exists ? 1 : 0);
  w.one("walfold_slot_lost", "gauge", "1 when the replication slot's wal_status is 'lost'",
        s.wal_status == "lost" ? 1 : 0);
  if (s.lag_bytes)
    w.one("walfold_replication_lag_bytes", "gauge",
          "WAL bytes between PostgreSQL's flushed WAL end and the slot's confirmed position",
          static_cast<double>(*s.lag_bytes));
  if (s.oldest_pending_age_s)
    w.one("walfold_replication_lag_seconds", "gauge",
          "How long the oldest change not yet folded into MongoDB has waited in Redis (0 when "
          "none is pending)",
          *s.oldest_pending_age_s);
  w.one("walfold_wal_end_lsn", "gauge", "PostgreSQL's flushed WAL end (LSN as a number)",
        static_cast<double>(s.wal_end));
  w.one("walfold_received_lsn", "gauge", "Last WAL position the reader processed (LSN)",
        static_cast<double>(p.received_lsn.load()));
  w.one("walfold_enqueued_lsn", "gauge", "End of the last commit whose jobs are in Redis (LSN)",
        static_cast<double>(s.enqueued_end));
  w.one("walfold_confirmed_lsn", "gauge",
        "The checkpoint: position saved in MongoDB and confirmed to PostgreSQL (LSN)",
        static_cast<double>(p.confirmed_lsn.load()));
  if (s.checkpoint_lsn)
    w.one("walfold_checkpoint_saved_timestamp_seconds", "gauge",
          "When the checkpoint in MongoDB was last saved (Unix seconds)",
          static_cast<double>(s.checkpoint_saved_ms) / 1000.0);
}

// What the reader decoded and did besides: heartbeats, snapshot loads.
void write_reader(Writer& w, const Progress& p) {
  w.one("walfold_commits_received_total", "counter",
        "Commits of the published tables decoded by the reader", p.commits_seen.load());
  w.one("walfold_rows_received_total", "counter", "Row changes decoded by the reader",
        p.changes_seen.load());
  w.one("walfold_heartbeats_total", "counter",
        "Heartbeat messages written while the published tables were idle", p.heartbeats.load());
  if (const auto rtt = p.heartbeat_round_trip_us.load(); rtt >= 0)
    w.one("walfold_heartbeat_round_trip_seconds", "gauge",
          "From writing the last heartbeat message to its WAL position reaching the reader",
          static_cast<double>(rtt) / 1e6);
  w.one("walfold_rebuild_in_progress", "gauge",
        "1 while the read model is loaded from a snapshot (initial load, rebuild after a "
        "TRUNCATE)",
        p.rebuilding.load() ? 1.0 : 0.0);
  w.one("walfold_snapshot_documents_written_total", "counter",
        "Documents written to MongoDB by snapshot loads (initial load, rebuilds after a "
        "TRUNCATE), as MongoDB acknowledged them",
        static_cast<double>(p.snapshot_documents.load()));
}

// Jobs by priority class: the configured classes always, others once seen.
void write_jobs_by_priority(Writer& w, const Config& cfg, const Progress& p) {
  std::set<int> classes{cfg.priorities.replay};
  for (const auto& [_, t] : cfg.tables) classes.insert(t.priority);
  for (const auto& r : cfg.priorities.rules) classes.insert(r.priority);
  for (int i = 0; i < 256; ++i)
    if (p.enqueued_by_priority[i] || p.folded_by_priority[i] || p.retried_by_priority[i] ||
        p.dead_by_priority[i])
      classes.insert(i);
  auto by_priority = [&](const char* name, const char* help, const Progress::ByPriority& a) {
    w.family(name, "counter", help);
    for (int c : classes) w.value(name, a[c].load(), label("priority", std::to_string(c)));
  };
  by_priority("walfold_jobs_enqueued_total", "Jobs handed to Redis by the reader, by priority",
              p.enqueued_by_priority);
  by_priority("walfold_jobs_folded_total", "Jobs folded into MongoDB and acknowledged, by priority",
              p.folded_by_priority);
  by_priority("walfold_jobs_retried_total",
              "Failed attempts of a key's head job put back with a backoff, by priority",
              p.retried_by_priority);
  by_priority("walfold_jobs_dead_lettered_total", "Keys dead-lettered, by priority",
              p.dead_by_priority);
}

void write_queue(Writer& w, const Sample& s) {
  if (s.counts) {
    w.family("walfold_queue_keys", "gauge", "Ordering keys with jobs in Redis, by state");
    w.value("walfold_queue_keys", s.counts->ready_keys, label("state", "ready"));
    w.value("walfold_queue_keys", s.counts->active_keys, label("state", "active"));
    w.value("walfold_queue_keys", s.counts->delayed_keys, label("state", "delayed"));
    w.value("walfold_queue_keys", s.counts->dead_keys, label("state", "dead"));
    w.one("walfold_queue_pending_jobs", "gauge", "Jobs in Redis not yet folded",
          s.counts->pending_jobs);
    w.one("walfold_queue_paused", "gauge", "1 while the queue is paused (walfold queue pause)",
          s.counts->paused ? 1 : 0);
  }
  if (s.oldest_pending_age_s)
    w.one("walfold_queue_oldest_pending_age_seconds", "gauge",
          "Age of the oldest pending job (since it was enqueued)", *s.oldest_pending_age_s);
}

void write_mongodb(Writer& w, const Progress& p) {
  w.one("walfold_mongodb_write_commands_total", "counter",
        "MongoDB write commands (bulk writes) sent by the workers", p.mongo_write_commands.load());
  w.one("walfold_mongodb_statements_total", "counter",
        "Update statements inside those write commands", p.mongo_statements.load());
  w.one("walfold_rows_folded_total", "counter", "Row changes folded into MongoDB",
        p.changes_folded.load());
  w.one("walfold_fold_errors_total", "counter", "Jobs that could not be folded (poison attempts)",
        p.fold_errors.load());
}

void write_commit_to_mongodb(Writer& w, const Progress& p) {
  const char* h = "walfold_commit_to_mongodb_seconds";
  w.family(h, "histogram",
           "From a transaction's commit timestamp in PostgreSQL to MongoDB's acknowledgement of "
           "the fold of its job (one observation per job folded)");
  const auto& hist = p.commit_to_mongodb;
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < hist.bounds.size(); ++i) {
    cumulative += hist.buckets[i].load();
    w.value(std::string(h) + "_bucket", static_cast<double>(cumulative),
            label("le", number(hist.bounds[i])));
  }
  // Count and +Inf from the same loads, so the exposition is consistent while workers count.
  cumulative += hist.buckets[hist.bounds.size()].load();
  w.value(std::string(h) + "_bucket", static_cast<double>(cumulative), label("le", "+Inf"));
  w.value(std::string(h) + "_sum", static_cast<double>(hist.sum_us.load()) / 1e6);
  w.value(std::string(h) + "_count", static_cast<double>(cumulative));
}

// Reconnects, Redis-loss recoveries, rebuilds, and the deployment's processes.
void write_recovery(Writer& w, const Sample& s, const Progress& p) {
  w.family("walfold_reconnects_total", "counter",
           "Reader sessions ended by a server error and reconnected, by the server it named");
  w.value("walfold_reconnects_total", p.reconnects_postgresql.load(),
          label("server", "postgresql"));
  w.value("walfold_reconnects_total", p.reconnects_redis.load(), label("server", "redis"));
  w.value("walfold_reconnects_total", p.reconnects_mongodb.load(), label("server", "mongodb"));
  w.one("walfold_redis_loss_recoveries_total", "counter",
        "Times Redis was found to have lost walfold's queue (replayed from the slot)",
        p.redis_loss_recoveries.load());
  w.one("walfold_rebuilds_total", "counter", "Read-model rebuilds after a TRUNCATE",
        p.rebuilds.load());

  w.family("walfold_processes", "gauge",
           "walfold processes of this deployment registered in Redis, by role");
  std::map<std::string, int> roles;
  for (const auto& pr : s.processes) roles[pr.value("role", "?")]++;
  for (const char* r : {"reader", "standby", "worker"}) roles.emplace(r, 0);
  for (const auto& [r, n] : roles) w.value("walfold_processes", n, label("role", r));
}

}  // namespace

std::string Observer::metrics_text() const {
  const auto s = sample();
  const auto& p = progress_;
  Writer w;
  write_identity(w, *this, s);
  write_positions(w, s, p);
  write_reader(w, p);
  write_jobs_by_priority(w, cfg_, p);
  write_queue(w, s);
  write_mongodb(w, p);
  write_commit_to_mongodb(w, p);
  write_recovery(w, s, p);
  return w.str();
}

}  // namespace walfold::observe
