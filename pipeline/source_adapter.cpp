#include "pipeline/source_adapter.h"

#include <string>
#include <utility>

namespace walfold::pipeline {
namespace {

cdc::TypeClass type_class(projections::ColumnType t) {
  switch (t) {
    case projections::ColumnType::Any:
      return cdc::TypeClass::Any;
    case projections::ColumnType::Integer:
      return cdc::TypeClass::Integer;
    case projections::ColumnType::Numeric:
      return cdc::TypeClass::Numeric;
  }
  return cdc::TypeClass::Any;
}

}  // namespace

cdc::Source source_of(const Config& cfg, const projections::Projection& projection) {
  cdc::Source source;
  source.name = std::string(projection.name());
  for (const auto& [_, t] : cfg.tables) {
    cdc::SourceTable st;
    st.schema = t.schema;
    st.name = t.name;
    st.model = t.model;
    const int id = projection.table_index(t.model);
    if (id < 0) {
      st.problem = "is configured as model '" + t.model + "', which the " + source.name +
                   " projection does not have";
    } else {
      const auto& spec = projection.tables()[static_cast<std::size_t>(id)];
      st.id = static_cast<std::uint32_t>(id);
      st.replica_identity_full = spec.replica_identity_full;
      for (const auto& col : spec.columns)
        st.columns.push_back({col.name, type_class(col.type), col.need});
    }
    source.tables.push_back(std::move(st));
  }
  return source;
}

cdc::AssemblySettings assembly_settings(const Config& cfg) {
  return {cfg.reader.max_transaction_mb, cfg.priorities.replay};
}

cdc::SourceSettings source_settings(const Config& cfg, PgConnInfo conninfo) {
  cdc::SourceSettings s;
  s.conninfo = std::move(conninfo);
  s.slot = cfg.postgres.slot;
  s.status_interval = cfg.reader.status_interval;
  s.heartbeat_interval = cfg.reader.heartbeat_interval;
  s.enqueue_max_delay = cfg.reader.enqueue_max_delay;
  s.enqueue_batch_jobs = cfg.reader.enqueue_batch_jobs;
  s.assembly = assembly_settings(cfg);
  return s;
}

ProjectionRouter::ProjectionRouter(const Config& cfg, const projections::Projection& projection,
                                   const cdc::Source& source)
    : projection_(projection), source_(source) {
  for (const auto& st : source.tables) {
    Table t;
    if (const auto* tc = cfg.table(st.schema, st.name)) t.priority = tc->priority;
    // A table with a problem is never routed (its first row change fails).
    if (st.problem.empty()) {
      const std::string name = st.qualified_name();
      for (const auto& rule : cfg.priorities.rules)
        if (!rule.table.empty() ? rule.table == name : projection.rule_applies(st.id, rule))
          t.rules.push_back(&rule);
    }
    tables_.push_back(std::move(t));
  }
}

cdc::Keys ProjectionRouter::route(std::size_t, const queue::Change& c,
                                  const cdc::ChangeContext& where) const {
  auto r = projection_.route(c, {where.relation, where.commit_lsn});
  return {std::move(r.key), std::move(r.old_key)};
}

int ProjectionRouter::priority(std::size_t table, const std::vector<queue::Value>& row) const {
  const auto& t = tables_.at(table);
  const auto id = source_.tables[table].id;
  int best = t.priority;
  for (const auto* rule : t.rules) {
    if (rule->priority >= best) continue;
    if (!projection_.rule_matches(id, *rule, row)) continue;
    best = rule->priority;
  }
  return best;
}

void verify_source(const Config& cfg, const projections::Projection& projection) {
  cdc::verify_source(postgres_conninfo(cfg.postgres), cfg.postgres.publication,
                     source_of(cfg, projection));
}

void run_setup(const Config& cfg, const projections::Projection& projection,
               const cdc::SetupOptions& opts) {
  auto o = opts;
  if (o.schema_sql.empty()) o.schema_sql = projection.schema_sql();
  cdc::run_setup(postgres_conninfo(cfg.postgres), cfg.postgres.publication,
                 source_of(cfg, projection), o);
}

}  // namespace walfold::pipeline
