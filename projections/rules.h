// Priority rules read generically: a rule's row conditions (config.h RowCondition) name columns
// of a TableSpec, so every projection can test them the same way from its rule_applies() and
// rule_matches() (projection.h).
#pragma once

#include <cstddef>
#include <vector>

#include "common/decimal.h"
#include "config/config.h"
#include "projections/projection.h"

namespace walfold::projections {

// A rule without a table applies to the table of its conditions' model, or, without
// conditions, to every table.
inline bool rule_applies_to(const TableSpec& spec, const PriorityRule& rule) {
  return rule.conditions.empty() || spec.model == rule.model;
}

// Whether `row` (columns as `spec` lists them) satisfies every condition of `rule`. A column
// that is NULL, unchanged or not a decimal where one is compared satisfies nothing (the fold
// refuses what it cannot read, with the row's details).
inline bool row_satisfies(const TableSpec& spec, const PriorityRule& rule,
                          const std::vector<queue::Value>& row) {
  if (rule.conditions.empty()) return true;
  if (spec.model != rule.model) return false;
  for (const auto& cond : rule.conditions) {
    std::size_t f = 0;
    while (f < spec.columns.size() && spec.columns[f].name != cond.column) ++f;
    if (f >= spec.columns.size() || f >= row.size() || row[f].kind != queue::Value::Text)
      return false;
    if (cond.op == RowCondition::Op::Equals) {
      if (row[f].text != cond.value) return false;
    } else {
      auto v = Decimal::parse(row[f].text);
      if (!v || !cond.number || v->compare(*cond.number) <= 0) return false;
    }
  }
  return true;
}

}  // namespace walfold::projections
