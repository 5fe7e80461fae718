// `walfold reconcile --verify`: compares the read model with PostgreSQL per account and per user
// and reports drift. The comparison runs on the two-sided report (tools/report), which renders
// both sides in one canonical format, so the rules of "equal" live in one place.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>

#include "common/pg.h"
#include "config/config.h"
#include "tools/report.h"

namespace walfold::reconcile {

struct VerifyOptions {
  PgConnInfo pg_dsn;
  std::string mongo_uri;
  std::string mongo_database;
  std::string mongo_username, mongo_password;  // see tools::ReportOptions
  tools::BankTables tables{};                  // the configuration's `tables:` mapping
};

// The options for `cfg`: its PostgreSQL and MongoDB connections and its `tables:` mapping.
VerifyOptions verify_options(const Config& cfg);

struct VerifyResult {
  std::size_t accounts = 0, users = 0;  // records compared (PostgreSQL side)
  std::size_t drifted = 0;              // records that differ or exist on one side only
};

// Writes one block per drifted record to `out` (nothing when clean).
VerifyResult verify(const VerifyOptions& opts, std::ostream& out);

// The comparison itself, on two reports (exposed for unit tests).
VerifyResult compare_reports(const std::string& postgres, const std::string& mongo,
                             std::ostream& out);

}  // namespace walfold::reconcile
