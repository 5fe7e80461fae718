// `walfold reconcile --verify`: compares the read model with PostgreSQL record by record and
// reports drift. Both sides are the projection's canonical form (projections/read_model.h,
// read through tools/report.h), so the rules of "equal" live in one place; this file only
// matches records by section and id and prints the ones that differ.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>
#include <vector>

#include "config/config.h"
#include "projections/projection.h"
#include "tools/report.h"

namespace walfold::reconcile {

struct VerifyResult {
  projections::Counts compared;  // records compared per section (PostgreSQL side)
  std::size_t drifted = 0;       // records that differ or exist on one side only
};

// Writes one block per drifted record to `out` (nothing when clean). `options.from` is ignored:
// both sides are read.
VerifyResult verify(const tools::ReportOptions& options, const projections::Projection& projection,
                    std::ostream& out);

// A canonical record, owned (exposed for unit tests).
struct Record {
  std::string section, id, text;
};
// The comparison itself, on the two sides' records.
VerifyResult compare_records(const std::vector<Record>& postgres, const std::vector<Record>& mongo,
                             std::ostream& out);

}  // namespace walfold::reconcile
