#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"

namespace walfold {
namespace {

struct Ctx {
  std::string file;
  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& what) const {
    std::ostringstream os;
    os << file;
    if (!mark.is_null()) os << ':' << mark.line + 1 << ':' << mark.column + 1;
    os << ": " << what;
    throw ConfigError(os.str());
  }
};

void check_keys(const Ctx& ctx, const YAML::Node& node, const std::string& where,
                const std::set<std::string>& allowed) {
  if (!node.IsMap()) ctx.fail(node.Mark(), where + " must be a mapping");
  std::map<std::string, int> seen;  // key -> line (1-based)
  for (const auto& kv : node) {
    if (!kv.first.IsScalar())
      ctx.fail(kv.first.Mark(), "a key in " + where + " must be a plain name");
    auto key = kv.first.as<std::string>();
    // yaml-cpp keeps one of two equal keys silently; a setting must not vanish that way.
    auto [it, fresh] = seen.emplace(key, kv.first.Mark().line + 1);
    if (!fresh)
      ctx.fail(kv.first.Mark(), "duplicate key '" + key + "' in " + where + " (first at line " +
                                    std::to_string(it->second) + ")");
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      ctx.fail(kv.first.Mark(),
               "unknown key '" + key + "' in " + where + " (expected one of: " + list + ")");
    }
  }
}

template <typename T>
T get(const Ctx& ctx, const YAML::Node& parent, const std::string& key, const std::string& where,
      T fallback) {
  auto node = parent[key];
  if (!node) return fallback;
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    ctx.fail(node.Mark(), where + "." + key + " has the wrong type");
  }
}

int get_int(const Ctx& ctx, const YAML::Node& parent, const std::string& key,
            const std::string& where, int fallback, int min, int max) {
  int v = get<int>(ctx, parent, key, where, fallback);
  if (v < min || v > max)
    ctx.fail(parent[key].Mark(), where + "." + key + " = " + std::to_string(v) +
                                     " is out of range [" + std::to_string(min) + ", " +
                                     std::to_string(max) + "]");
  return v;
}

std::chrono::milliseconds get_ms(const Ctx& ctx, const YAML::Node& parent, const std::string& key,
                                 const std::string& where, std::chrono::milliseconds fallback,
                                 int min, int max) {
  return std::chrono::milliseconds(
      get_int(ctx, parent, key, where, static_cast<int>(fallback.count()), min, max));
}

Model parse_model(const Ctx& ctx, const YAML::Node& node) {
  if (!node.IsScalar()) ctx.fail(node.Mark(), "model must be one of users, accounts, transactions");
  auto s = node.as<std::string>();
  if (s == "users") return Model::Users;
  if (s == "accounts") return Model::Accounts;
  if (s == "transactions") return Model::Transactions;
  ctx.fail(node.Mark(), "model '" + s + "' is not one of users, accounts, transactions");
}

// priorities: {aging_ms, replay, rules: [{table, kind, amount_above, priority}, ...]}
void parse_priorities(const Ctx& ctx, const YAML::Node& root, Config& c) {
  auto pr = root["priorities"];
  if (!pr) return;
  check_keys(ctx, pr, "priorities", {"aging_ms", "replay", "rules"});
  c.priorities.aging = get_ms(ctx, pr, "aging_ms", "priorities", c.priorities.aging, 1, 3600000);
  c.priorities.replay = get_int(ctx, pr, "replay", "priorities", c.priorities.replay, 0, 255);
  auto rules = pr["rules"];
  if (!rules) return;
  if (!rules.IsSequence()) ctx.fail(rules.Mark(), "priorities.rules must be a list of rules");
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const auto& n = rules[i];
    const std::string where = "priorities.rules[" + std::to_string(i) + "]";
    check_keys(ctx, n, where, {"table", "kind", "amount_above", "priority"});
    PriorityRule rule;
    if (!n["priority"]) ctx.fail(n.Mark(), where + ".priority is required");
    rule.priority = get_int(ctx, n, "priority", where, 0, 0, 255);
    rule.table = get<std::string>(ctx, n, "table", where, "");
    if (n["kind"]) rule.kind = get<std::string>(ctx, n, "kind", where, "");
    if (n["amount_above"]) {
      auto text = get<std::string>(ctx, n, "amount_above", where, "");
      rule.amount_above = Decimal::parse(text);
      if (!rule.amount_above)
        ctx.fail(n["amount_above"].Mark(),
                 where + ".amount_above '" + text +
                     "' is not a decimal number (write it as a string, e.g. \"10000.00\")");
    }
    if (rule.table.empty() && !rule.kind && !rule.amount_above)
      ctx.fail(n.Mark(), where + " has no condition (table, kind or amount_above)");
    const TableConfig* t = nullptr;
    if (!rule.table.empty()) {
      if (rule.table.find('.') == std::string::npos) rule.table = "public." + rule.table;
      auto it = c.tables.find(rule.table);
      if (it == c.tables.end())
        ctx.fail(n["table"].Mark(), where + ".table '" + rule.table + "' is not in tables");
      t = &it->second;
    }
    if ((rule.kind || rule.amount_above) && t && t->model != Model::Transactions)
      ctx.fail(n.Mark(), where + ": kind and amount_above apply to the transactions table, not " +
                             rule.table + " (model " + model_name(t->model) + ")");
    c.priorities.rules.push_back(std::move(rule));
  }
}

}  // namespace

const char* model_name(Model m) {
  switch (m) {
    case Model::Users:
      return "users";
    case Model::Accounts:
      return "accounts";
    case Model::Transactions:
      return "transactions";
  }
  return "?";
}

const TableConfig* Config::table(const std::string& schema, const std::string& name) const {
  auto it = tables.find(schema + "." + name);
  return it == tables.end() ? nullptr : &it->second;
}

const TableConfig* Config::table_for(Model m) const {
  for (const auto& [_, t] : tables)
    if (t.model == m) return &t;
  return nullptr;
}

namespace {
Config parse_config_nodes(const std::string& yaml_text, const std::string& source_name);
}

Config parse_config(const std::string& yaml_text, const std::string& source_name) {
  try {
    return parse_config_nodes(yaml_text, source_name);
  } catch (const YAML::Exception& e) {
    // A conversion the checks above did not anticipate (a list where a name belongs, a
    // mapping as a key): still a configuration error with its place.
    Ctx{source_name}.fail(e.mark, e.msg);
  }
}

namespace {
Config parse_config_nodes(const std::string& yaml_text, const std::string& source_name) {
  Ctx ctx{source_name};
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    ctx.fail(e.mark, "malformed YAML: " + e.msg);
  }
  Config c;
  c.source_file = source_name;
  if (!root || root.IsNull()) ctx.fail(YAML::Mark::null_mark(), "the file is empty");
  check_keys(ctx, root, "the top level",
             {"postgres", "redis", "mongodb", "tables", "reader", "workers", "priorities",
              "log_level", "state_dir"});

  auto pg = root["postgres"];
  if (!pg) ctx.fail(root.Mark(), "missing section 'postgres'");
  check_keys(ctx, pg, "postgres", {"dsn", "password_file", "slot", "publication"});
  c.postgres.dsn = get<std::string>(ctx, pg, "dsn", "postgres", "");
  if (c.postgres.dsn.empty()) ctx.fail(pg.Mark(), "postgres.dsn is required");
  c.postgres.password_file = get<std::string>(ctx, pg, "password_file", "postgres", "");
  c.postgres.slot = get<std::string>(ctx, pg, "slot", "postgres", c.postgres.slot);
  c.postgres.publication =
      get<std::string>(ctx, pg, "publication", "postgres", c.postgres.publication);
  for (const auto& [key, value] :
       {std::pair{"slot", c.postgres.slot}, std::pair{"publication", c.postgres.publication}}) {
    bool ok = !value.empty() && value.size() <= 63;
    for (char ch : value)
      ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_');
    if (!ok)
      ctx.fail(pg[key] ? pg[key].Mark() : pg.Mark(),
               std::string("postgres.") + key + " '" + value +
                   "' must be 1-63 characters of lower-case letters, digits and '_'");
  }

  if (auto r = root["redis"]) {
    check_keys(ctx, r, "redis", {"host", "port", "unix_socket", "password_file", "db", "prefix"});
    c.redis.host = get<std::string>(ctx, r, "host", "redis", c.redis.host);
    c.redis.port = get_int(ctx, r, "port", "redis", c.redis.port, 1, 65535);
    c.redis.unix_socket = get<std::string>(ctx, r, "unix_socket", "redis", "");
    c.redis.password_file = get<std::string>(ctx, r, "password_file", "redis", "");
    c.redis.db = get_int(ctx, r, "db", "redis", 0, 0, 15);
    c.redis.prefix = get<std::string>(ctx, r, "prefix", "redis", c.redis.prefix);
    if (c.redis.prefix.find_first_of("{}: ") != std::string::npos || c.redis.prefix.empty())
      ctx.fail(r["prefix"].Mark(),
               "redis.prefix must be non-empty without '{', '}', ':' or blanks");
  }

  if (auto m = root["mongodb"]) {
    check_keys(ctx, m, "mongodb", {"uri", "database", "write_concern"});
    c.mongodb.uri = get<std::string>(ctx, m, "uri", "mongodb", c.mongodb.uri);
    c.mongodb.database = get<std::string>(ctx, m, "database", "mongodb", c.mongodb.database);
    c.mongodb.write_concern =
        get<std::string>(ctx, m, "write_concern", "mongodb", c.mongodb.write_concern);
    if (c.mongodb.uri.rfind("mongodb://", 0) != 0 && c.mongodb.uri.rfind("mongodb+srv://", 0) != 0)
      ctx.fail(m["uri"].Mark(), "mongodb.uri must start with mongodb:// or mongodb+srv://");
  }

  if (auto t = root["tables"]) {
    if (!t.IsMap()) ctx.fail(t.Mark(), "tables must be a mapping of schema.table to settings");
    for (const auto& kv : t) {
      if (!kv.first.IsScalar())
        ctx.fail(kv.first.Mark(), "a table name must be a plain schema.table name");
      auto full = kv.first.as<std::string>();
      auto dot = full.find('.');
      TableConfig tc;
      if (dot == std::string::npos) {
        tc.name = full;
      } else {
        tc.schema = full.substr(0, dot);
        tc.name = full.substr(dot + 1);
      }
      const auto& v = kv.second;
      check_keys(ctx, v, "tables." + full, {"model", "priority"});
      if (!v["model"]) ctx.fail(v.Mark(), "tables." + full + ".model is required");
      tc.model = parse_model(ctx, v["model"]);
      tc.priority = get_int(ctx, v, "priority", "tables." + full, tc.priority, 0, 255);
      if (c.tables.count(tc.schema + "." + tc.name))
        ctx.fail(kv.first.Mark(), "table " + tc.schema + "." + tc.name + " is configured twice");
      c.tables[tc.schema + "." + tc.name] = tc;
    }
  }
  if (c.tables.empty()) {
    c.tables["public.users"] = {"public", "users", Model::Users, 3};
    c.tables["public.accounts"] = {"public", "accounts", Model::Accounts, 3};
    c.tables["public.transactions"] = {"public", "transactions", Model::Transactions, 5};
  }
  for (Model m : {Model::Users, Model::Accounts, Model::Transactions}) {
    int n = 0;
    for (const auto& [_, tc] : c.tables) n += tc.model == m;
    if (n != 1)
      ctx.fail(root["tables"] ? root["tables"].Mark() : YAML::Mark::null_mark(),
               std::string("exactly one table must have model '") + model_name(m) + "' (found " +
                   std::to_string(n) + ")");
  }

  if (auto rd = root["reader"]) {
    check_keys(ctx, rd, "reader",
               {"status_interval_ms", "enqueue_max_delay_ms", "enqueue_batch_jobs",
                "heartbeat_interval_ms", "checkpoint_history_interval_ms", "reconnect_min_ms",
                "reconnect_max_ms", "max_transaction_mb"});
    c.reader.status_interval =
        get_ms(ctx, rd, "status_interval_ms", "reader", c.reader.status_interval, 10, 3600000);
    c.reader.enqueue_max_delay =
        get_ms(ctx, rd, "enqueue_max_delay_ms", "reader", c.reader.enqueue_max_delay, 0, 10000);
    c.reader.enqueue_batch_jobs =
        get_int(ctx, rd, "enqueue_batch_jobs", "reader", c.reader.enqueue_batch_jobs, 1, 100000);
    c.reader.reconnect_min =
        get_ms(ctx, rd, "reconnect_min_ms", "reader", c.reader.reconnect_min, 10, 600000);
    c.reader.reconnect_max =
        get_ms(ctx, rd, "reconnect_max_ms", "reader", c.reader.reconnect_max, 10, 3600000);
    c.reader.heartbeat_interval =
        get_ms(ctx, rd, "heartbeat_interval_ms", "reader", c.reader.heartbeat_interval, 0, 3600000);
    c.reader.checkpoint_history_interval =
        get_ms(ctx, rd, "checkpoint_history_interval_ms", "reader",
               c.reader.checkpoint_history_interval, 0, 86400000);
    c.reader.max_transaction_mb =
        get_int(ctx, rd, "max_transaction_mb", "reader", c.reader.max_transaction_mb, 1, 65536);
  }
  if (auto w = root["workers"]) {
    check_keys(ctx, w, "workers",
               {"count", "batch_keys", "batch_jobs_per_key", "batch_max_changes", "lease_ms",
                "idle_poll_max_ms", "retry"});
    c.workers.count = get_int(ctx, w, "count", "workers", c.workers.count, 0, 256);
    c.workers.batch_keys = get_int(ctx, w, "batch_keys", "workers", c.workers.batch_keys, 1, 10000);
    c.workers.batch_jobs_per_key =
        get_int(ctx, w, "batch_jobs_per_key", "workers", c.workers.batch_jobs_per_key, 1, 10000);
    c.workers.batch_max_changes =
        get_int(ctx, w, "batch_max_changes", "workers", c.workers.batch_max_changes, 1, 10000000);
    c.workers.lease = get_ms(ctx, w, "lease_ms", "workers", c.workers.lease, 1000, 3600000);
    c.workers.idle_poll_max =
        get_ms(ctx, w, "idle_poll_max_ms", "workers", c.workers.idle_poll_max, 1, 10000);
    if (auto rt = w["retry"]) {
      auto& r = c.workers.retry;
      check_keys(ctx, rt, "workers.retry", {"initial_ms", "max_ms", "max_attempts"});
      r.initial = get_ms(ctx, rt, "initial_ms", "workers.retry", r.initial, 1, 3600000);
      r.max = get_ms(ctx, rt, "max_ms", "workers.retry", r.max, 1, 86400000);
      r.max_attempts = get_int(ctx, rt, "max_attempts", "workers.retry", r.max_attempts, 1, 1000);
      if (r.initial > r.max)
        ctx.fail(rt.Mark(), "workers.retry.initial_ms is larger than workers.retry.max_ms");
    }
  }
  parse_priorities(ctx, root, c);
  c.log_level = get<std::string>(ctx, root, "log_level", "top level", c.log_level);
  static const std::set<std::string> levels{"trace", "debug",    "info", "warn",
                                            "error", "critical", "off"};
  if (!levels.count(c.log_level))
    ctx.fail(root["log_level"].Mark(),
             "log_level '" + c.log_level +
                 "' is not one of trace, debug, info, warn, error, critical, off");
  if (c.mongodb.write_concern != "majority" &&
      c.mongodb.write_concern.find_first_not_of("0123456789") != std::string::npos)
    ctx.fail(
        root["mongodb"]["write_concern"].Mark(),
        "mongodb.write_concern '" + c.mongodb.write_concern + "' must be 'majority' or a number");
  if (c.reader.reconnect_min > c.reader.reconnect_max)
    ctx.fail(root["reader"].Mark(),
             "reader.reconnect_min_ms is larger than reader.reconnect_max_ms");
  c.state_dir = get<std::string>(ctx, root, "state_dir", "top level", c.state_dir);
  return c;
}
}  // namespace

Config load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open the configuration file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path);
}

std::string expand_environment(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      auto close = text.find('}', i + 2);
      if (close == std::string::npos) throw ConfigError("'" + text + "': unterminated ${...}");
      std::string name = text.substr(i + 2, close - i - 2);
      const char* value = std::getenv(name.c_str());
      if (!value)
        throw ConfigError("'" + text + "' refers to ${" + name + "}, which is not set" +
                          (name == "CREDENTIALS_DIRECTORY"
                               ? " (is LoadCredential= configured for the unit?)"
                               : ""));
      out += value;
      i = close;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string read_secret_file(const std::string& configured_path) {
  const std::string path = expand_environment(configured_path);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw ConfigError(path + ": the secret file does not exist or is not a regular file");
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot read the secret file");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

PgConnInfo postgres_conninfo(const PostgresConfig& pg) {
  PgConnInfo info(pg.dsn);
  if (!pg.password_file.empty()) info.password = read_secret_file(pg.password_file);
  return info;
}

}  // namespace walfold
