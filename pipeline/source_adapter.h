// The source's view of the house: cdc/ declares what it needs (cdc/source.h: settings, the
// tables it decodes, a Router for keys and priorities) and knows neither the configuration nor
// the projection; this adapter builds those from the Config (`tables:`, `reader:`, `postgres:`,
// `priorities:`) and a projections::Projection (its tables and columns, route(), the priority
// rules it matches).
#pragma once

#include <cstddef>
#include <vector>

#include "cdc/preflight.h"
#include "cdc/source.h"
#include "common/pg.h"
#include "config/config.h"
#include "projections/projection.h"

namespace walfold::pipeline {

// The configured tables (`tables:`, in its order) as the projection declares them: columns,
// type classes, REPLICA IDENTITY FULL. A table whose model the projection does not have is
// listed with a problem (cdc::SourceTable::problem).
cdc::Source source_of(const Config& cfg, const projections::Projection& projection);

// The replication loop's settings; `conninfo` is postgres_conninfo(cfg.postgres), read once by
// the caller per session.
cdc::SourceSettings source_settings(const Config& cfg, PgConnInfo conninfo);
cdc::AssemblySettings assembly_settings(const Config& cfg);

// Keys from Projection::route; the priority of a row is its table's (`tables:` priority), or
// the more urgent one of a `priorities.rules` rule that applies to the table (its `table:`, or
// the projection's rule_applies) and whose row conditions the projection says it matches.
class ProjectionRouter : public cdc::Router {
 public:
  // `cfg`, `projection` and `source` (source_of(cfg, projection)) outlive the router.
  ProjectionRouter(const Config& cfg, const projections::Projection& projection,
                   const cdc::Source& source);
  cdc::Keys route(std::size_t table, const queue::Change& c,
                  const cdc::ChangeContext& where) const override;
  int priority(std::size_t table, const std::vector<queue::Value>& row) const override;

 private:
  struct Table {
    int priority = 5;                        // the table's own (`tables:`)
    std::vector<const PriorityRule*> rules;  // priorities.rules that can apply to it
  };
  const projections::Projection& projection_;
  const cdc::Source& source_;
  std::vector<Table> tables_;  // per cdc::Source::tables
};

// The source and its router together (the reader service, tests, benchmarks).
struct SourceAdapter {
  SourceAdapter(const Config& cfg, const projections::Projection& projection)
      : source(source_of(cfg, projection)), router(cfg, projection, source) {}
  SourceAdapter(const SourceAdapter&) = delete;  // the router refers to `source`
  SourceAdapter& operator=(const SourceAdapter&) = delete;
  cdc::Source source;
  ProjectionRouter router;
};

// cdc::verify_source and cdc::run_setup (cdc/preflight.h) for the configured tables of the
// projection, on the configured PostgreSQL and publication.
void verify_source(const Config& cfg, const projections::Projection& projection);
void run_setup(const Config& cfg, const projections::Projection& projection,
               const cdc::SetupOptions& opts);

}  // namespace walfold::pipeline
