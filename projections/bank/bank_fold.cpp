#include "projections/bank/bank_fold.h"

#include <charconv>
#include <optional>
#include <set>
#include <tuple>

#include "common/error.h"
#include "common/timestamp.h"
#include "projections/bank/schema.h"

namespace walfold::projections {
namespace {

using queue::Change;
using queue::Job;
using queue::Value;

// Names a change precisely in error messages.
std::string where(const Job& job, const Change& c, std::string_view column) {
  const auto& row = c.new_row.empty() ? c.old_row : c.new_row;
  std::string id = !row.empty() && row[0].kind == Value::Text ? row[0].text : "?";
  return std::string(bank::table_name(c.table)) + " row id=" + id + " (" +
         (c.op == 'I'   ? "INSERT"
          : c.op == 'U' ? "UPDATE"
                        : "DELETE") +
         " at commit LSN " + format_lsn(job.commit_lsn) + ")" +
         (column.empty() ? "" : ", column " + std::string(column));
}

const std::string& text(const Job& job, const Change& c, const std::vector<Value>& row, int f) {
  if (f >= static_cast<int>(row.size()) || row[f].kind != Value::Text) {
    std::string state = f >= static_cast<int>(row.size()) ? "missing"
                        : row[f].kind == Value::Null      ? "NULL"
                        : row[f].kind == Value::Unchanged ? "an unchanged TOAST value"
                                                          : "missing";
    throw DataError(where(job, c, bank::column_name(c.table, f)) + " is " + state +
                    (&row == &c.old_row ? " in the old row (is REPLICA IDENTITY FULL set? "
                                          "`walfold setup` sets it)"
                                        : ""));
  }
  return row[f].text;
}

std::int64_t to_int(const Job& job, const Change& c, const std::vector<Value>& row, int f) {
  const auto& s = text(job, c, row, f);
  std::int64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || r.ptr != s.data() + s.size())
    throw DataError(where(job, c, bank::column_name(c.table, f)) + " = '" + s +
                    "' is not an integer");
  return v;
}

Decimal to_decimal(const Job& job, const Change& c, const std::vector<Value>& row, int f) {
  const auto& s = text(job, c, row, f);
  auto d = Decimal::parse(s);
  if (!d)
    throw DataError(
        where(job, c, bank::column_name(c.table, f)) + " = '" + s +
        "' cannot be held exactly by Decimal128 (NaN, Infinity or more than 34 digits)");
  return *d;
}

std::int64_t to_time_us(const Job& job, const Change& c, const std::vector<Value>& row, int f) {
  const auto& s = text(job, c, row, f);
  auto t = parse_pg_timestamptz(s);
  if (!t)
    throw DataError(where(job, c, bank::column_name(c.table, f)) + " = '" + s +
                    "' is not a timestamp");
  return *t;
}

std::string trim_right(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// The new row with TOAST-unchanged values taken from the old row (REPLICA IDENTITY FULL carries
// them); values unknown on both sides stay 'u' and are never written.
std::vector<Value> effective_new_row(const Change& c) {
  std::vector<Value> row = c.new_row;
  for (std::size_t i = 0; i < row.size(); ++i)
    if (row[i].kind == Value::Unchanged && i < c.old_row.size() && c.old_row[i].kind == Value::Text)
      row[i] = c.old_row[i];
  return row;
}

Decimal signed_amount(const Job& job, const Change& c, const std::vector<Value>& row) {
  Decimal amount = to_decimal(job, c, row, bank::kTxAmount);
  const auto& kind = text(job, c, row, bank::kTxKind);
  if (kind == "deposit") return amount;
  if (kind == "withdrawal") return amount.negated();
  throw DataError(where(job, c, "kind") + " = '" + kind + "' is neither deposit nor withdrawal");
}

Decimal add(const Job& job, const Decimal& a, const Decimal& b, const std::string& what) {
  auto r = a.plus(b);
  if (!r)
    throw DataError(what + " overflows 34 decimal digits at commit LSN " +
                    format_lsn(job.commit_lsn));
  return *r;
}

// The largest magnitude Decimal128 holds exactly with `scale` fractional digits: 34 nines.
Decimal exact_limit(int scale) {
  std::string nines(34, '9');
  if (scale > 0) nines.insert(nines.size() - static_cast<std::size_t>(scale), ".");
  return *Decimal::parse(scale >= 34 ? "0" + nines : nines);
}

// {$and: [{field: {$not: {$gt: hi}}}, {field: {$not: {$lt: lo}}}]} for each incremented total:
// the $inc applies only while `total + d` keeps every digit (missing fields match: they start
// at d). Without it two accounts of one user folded at once could push a total past 34 digits,
// each fold having checked only its own sum.
void append_exact_bounds(bson_t* filter, const std::map<std::string, Decimal>& incs,
                         const std::map<std::string, Decimal>& current) {
  std::vector<std::tuple<std::string, const char*, Decimal>> bounds;
  for (const auto& [cur, d] : incs) {
    auto it = current.find(cur);
    const int scale = std::max(d.scale(), it == current.end() ? 0 : it->second.scale());
    const Decimal m = exact_limit(scale);
    // total + d within ±m. Where that bound itself needs more than 34 digits, ±m: a total
    // beyond it has fewer fractional digits than `scale` (the read was stale), and is refused
    // rather than trusted.
    bounds.emplace_back("balances." + cur, "$gt", m.plus(d.negated()).value_or(m));
    bounds.emplace_back("balances." + cur, "$lt",
                        m.negated().plus(d.negated()).value_or(m.negated()));
  }
  if (bounds.empty()) return;
  bson_t all;
  bson_append_array_begin(filter, "$and", -1, &all);
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    const auto& [path, op, bound] = bounds[i];
    bson_t el, fld, no;
    std::string idx = std::to_string(i);
    bson_append_document_begin(&all, idx.c_str(), -1, &el);
    bson_append_document_begin(&el, path.c_str(), -1, &fld);
    bson_append_document_begin(&fld, "$not", -1, &no);
    append_decimal(&no, op, bound);
    bson_append_document_end(&fld, &no);
    bson_append_document_end(&el, &fld);
    bson_append_document_end(&all, &el);
  }
  bson_append_array_end(filter, &all);
}

// {_id: id, <guard>: {$not: {$gte: lsn}}}
Bson guarded_filter(std::int64_t id, const std::string& guard, Lsn lsn) {
  auto f = make_bson();
  BSON_APPEND_INT64(f.get(), "_id", id);
  append_lsn_not(f.get(), guard.c_str(), "$gte", lsn);
  return f;
}

// Creates the document with its defaults if missing; never changes an existing one.
template <typename Defaults>
Statement ensure(std::int64_t id, const Defaults& defaults) {
  Statement s;
  s.filter = make_bson();
  BSON_APPEND_INT64(s.filter.get(), "_id", id);
  s.update = make_bson();
  bson_t soi;
  bson_append_document_begin(s.update.get(), "$setOnInsert", -1, &soi);
  defaults(&soi);
  bson_append_document_end(s.update.get(), &soi);
  s.upsert = true;
  return s;
}

// A user document with empty collections, created by whichever key reaches it first.
Statement ensure_user(std::int64_t user_id) {
  return ensure(user_id, [](bson_t* d) {
    bson_t arr, bal, lsns;
    bson_append_array_begin(d, "accounts", -1, &arr);
    bson_append_array_end(d, &arr);
    bson_append_document_begin(d, "balances", -1, &bal);
    bson_append_document_end(d, &bal);
    bson_append_document_begin(d, "acct_lsn", -1, &lsns);
    bson_append_document_end(d, &lsns);
    BSON_APPEND_BOOL(d, "deleted", false);
  });
}

struct TxEntry {
  std::int64_t id;
  std::string kind;
  Decimal amount;
  std::int64_t created_at_us;
};

void append_entry(bson_t* arr, const char* idx, const TxEntry& e) {
  bson_t d;
  bson_append_document_begin(arr, idx, -1, &d);
  BSON_APPEND_INT64(&d, "id", e.id);
  BSON_APPEND_UTF8(&d, "kind", e.kind.c_str());
  append_decimal(&d, "amount", e.amount);
  BSON_APPEND_DATE_TIME(&d, "created_at", floor_ms(e.created_at_us));
  BSON_APPEND_INT64(&d, "created_at_us", e.created_at_us);
  bson_append_document_end(arr, &d);
}

// The transactions-collection document state a job leaves behind for one transaction.
struct TxDocState {
  bool tombstone = false;
  bool full = false;  // all fields below are set
  std::int64_t account_id = 0;
  TxEntry entry;
  std::optional<std::string> transfer_id;
  std::vector<std::int64_t> left;  // accounts it was moved out of (left.<id> = LSN)
};

// Per user document, what one account's job changes.
struct UserDelta {
  std::map<std::string, Decimal> balances;  // currency -> delta
  std::map<std::string, int> counts;        // currency -> change in live accounts
  std::optional<bool> member;               // final membership of the account in `accounts`
};

}  // namespace

std::pair<char, std::int64_t> parse_ordering_key(const std::string& key) {
  std::int64_t id = 0;
  if (key.size() > 2 && key[1] == ':' && (key[0] == 'a' || key[0] == 'u')) {
    auto r = std::from_chars(key.data() + 2, key.data() + key.size(), id);
    if (r.ec == std::errc{} && r.ptr == key.data() + key.size()) return {key[0], id};
  }
  throw DataError("malformed ordering key '" + key + "'");
}

std::vector<std::int64_t> BankFold::accounts_needed(const std::vector<std::string>& keys) {
  std::set<std::int64_t> ids;
  for (const auto& k : keys) {
    auto [kind, id] = parse_ordering_key(k);
    if (kind == 'a') ids.insert(id);
  }
  return {ids.begin(), ids.end()};
}

void BankFold::set_account(std::int64_t id, const AccountSnapshot& snapshot) {
  accounts_[id] = snapshot;
}

std::vector<std::int64_t> BankFold::users_needed(const std::vector<const queue::Job*>& jobs) const {
  std::set<std::int64_t> ids;
  for (const auto& [id, a] : accounts_)
    if (a.exists) ids.insert(a.user_id);
  for (const auto* job : jobs)
    for (const auto& c : job->changes)
      if (c.table == bank::kAccounts && c.op != 'D' &&
          c.new_row.size() > static_cast<std::size_t>(bank::kAcctUserId) &&
          c.new_row[bank::kAcctUserId].kind == Value::Text) {
        std::int64_t v = 0;
        const auto& t = c.new_row[bank::kAcctUserId].text;
        if (std::from_chars(t.data(), t.data() + t.size(), v).ec == std::errc{}) ids.insert(v);
      }
  return {ids.begin(), ids.end()};
}

void BankFold::set_user(std::int64_t id, UserSnapshot snapshot) {
  users_[id] = std::move(snapshot);
}

void BankFold::fold(const Job& job, WritePlan& plan) {
  auto [kind, id] = parse_ordering_key(job.key);
  // The job format is generic (queue/job.h): a change's table and row width are checked here,
  // before any row is read by column.
  for (const auto& c : job.changes) {
    if (c.table >= bank::kTableCount)
      throw DataError("job " + job.key + " at commit LSN " + format_lsn(job.commit_lsn) +
                      " has a change of table " + std::to_string(c.table) +
                      ", which the bank projection does not have");
    const auto n = static_cast<std::size_t>(bank::column_count(c.table));
    for (const auto* row : {&c.new_row, &c.old_row})
      if (!row->empty() && row->size() != n)
        throw DataError(where(job, c, "") + " has " + std::to_string(row->size()) +
                        " columns; the " + bank::table_name(c.table) + " table has " +
                        std::to_string(n));
    if ((c.op == 'I' && c.new_row.empty()) || (c.op == 'U' && c.new_row.empty()) ||
        (c.op == 'D' && c.old_row.empty()))
      throw DataError(where(job, c, "") + " carries no row");
  }
  plan.changes += job.changes.size();
  if (kind == 'u')
    fold_user_job(job, id, plan);
  else
    fold_account_job(job, id, plan);
}

void BankFold::fold_user_job(const Job& job, std::int64_t user_id, WritePlan& plan) {
  // Coalesce the job's changes of this user into the final state.
  bool tombstone = false, touched = false;
  std::optional<std::string> full_name, email;
  std::optional<std::int64_t> created_us;
  for (const auto& c : job.changes) {
    if (c.table != bank::kUsers)
      throw DataError(where(job, c, "") + " arrived under user key " + job.key);
    touched = true;
    if (c.op == 'D') {
      tombstone = true;
      continue;
    }
    tombstone = false;
    auto row = effective_new_row(c);
    auto pick = [&](int f) -> std::optional<std::string> {
      if (row[f].kind == Value::Unchanged || row[f].kind == Value::Missing) return std::nullopt;
      return text(job, c, row, f);
    };
    if (auto v = pick(bank::kUserFullName)) full_name = v;
    if (auto v = pick(bank::kUserEmail)) email = v;
    if (row[bank::kUserCreatedAt].kind == Value::Text)
      created_us = to_time_us(job, c, row, bank::kUserCreatedAt);
  }
  if (!touched) return;
  plan.users.push_back(ensure_user(user_id));
  Statement s;
  s.filter = guarded_filter(user_id, "profile_lsn", job.commit_lsn);
  s.update = make_bson();
  bson_t set;
  bson_append_document_begin(s.update.get(), "$set", -1, &set);
  if (full_name) BSON_APPEND_UTF8(&set, "full_name", full_name->c_str());
  if (email) BSON_APPEND_UTF8(&set, "email", email->c_str());
  if (created_us) BSON_APPEND_DATE_TIME(&set, "created_at", floor_ms(*created_us));
  BSON_APPEND_BOOL(&set, "deleted", tombstone);
  BSON_APPEND_INT64(&set, "profile_lsn", static_cast<std::int64_t>(job.commit_lsn));
  bson_append_document_end(s.update.get(), &set);
  plan.users.push_back(std::move(s));
}

namespace {

// One account's job folded: the job's changes are read into the state below first
// (read_changes), then every user total is computed exactly (user_totals), and only then are
// statements emitted, transactions first, users, and the account document last (a refused job
// leaves no statement behind).
class AccountJobFold {
 public:
  AccountJobFold(const Job& job, std::int64_t account_id, AccountSnapshot& acct,
                 std::unordered_map<std::int64_t, UserSnapshot>& user_snapshots)
      : job_(job),
        lsn_(job.commit_lsn),
        account_id_(account_id),
        acct_(acct),
        user_snapshots_(user_snapshots),
        acct_name_("account " + std::to_string(account_id)) {}

  void read_changes() {
    for (const auto& c : job_.changes) {
      if (c.table == bank::kTransactions)
        transaction_change(c);
      else if (c.table == bank::kAccounts)
        account_change(c);
      else
        throw DataError(where(job_, c, "") + " arrived under account key " + job_.key);
    }
    settle();
  }

  // Every user total this job changes, computed exactly before anything is written. A user
  // document that already holds this job (a crash between the bulks) is skipped: its update is
  // a no-op.
  void user_totals() {
    for (auto& [user_id, ud] : users_) {
      auto& snap = user_snapshots_[user_id];
      if (auto g = snap.acct_lsn.find(account_id_); g != snap.acct_lsn.end() && g->second >= lsn_)
        continue;
      if (snap.floor_lsn >= lsn_) continue;
      for (auto& [cur, d] : ud.balances) {
        auto it = snap.balances.find(cur);
        const Decimal before = it == snap.balances.end() ? Decimal() : it->second;
        totals_before_[user_id][cur] = before;
        totals_after_[user_id][cur] =
            add(job_, before, d, "user " + std::to_string(user_id) + " total in " + cur);
      }
    }
  }

  void emit(WritePlan& plan) {
    if (dirty_window_) {
      auto& m = plan.dirty_windows[account_id_];
      m = std::max(m, lsn_);
    }
    acct_.applied_lsn = lsn_;
    emit_transactions(plan);
    emit_users(plan);
    for (auto& [user_id, after] : totals_after_) {
      auto& snap = user_snapshots_[user_id];
      for (auto& [cur, t] : after) snap.balances[cur] = t;
      snap.acct_lsn[account_id_] = lsn_;
    }
    emit_account(plan);
  }

 private:
  void credit_owner(const Decimal& d) {
    auto& u = users_[acct_.user_id];
    auto it = u.balances.find(acct_.currency);
    if (it == u.balances.end())
      u.balances.emplace(acct_.currency, d);
    else
      it->second = add(job_, it->second, d, "user " + std::to_string(acct_.user_id) + " total");
  }

  // Money moved so far belongs to the owner as of now (before an ownership change).
  void settle() {
    if (unassigned_.is_zero()) return;
    if (!acct_.exists)
      throw DataError(acct_name_ + " at commit LSN " + format_lsn(lsn_) +
                      " is unknown to the read model (no accounts document and no INSERT before "
                      "it): its row was never folded; run `walfold reconcile --repair`");
    credit_owner(unassigned_);
    acct_.balance = add(job_, acct_.balance, unassigned_, acct_name_ + " balance");
    unassigned_ = Decimal();
  }

  void transaction_change(const Change& c) {
    std::optional<std::int64_t> old_acct, new_acct;
    if (c.op != 'I') old_acct = to_int(job_, c, c.old_row, bank::kTxAccountId);
    std::vector<Value> row;
    if (c.op != 'D') {
      row = effective_new_row(c);
      new_acct = to_int(job_, c, row, bank::kTxAccountId);
    }
    bool removed = old_acct == account_id_, added = new_acct == account_id_;
    if (!removed && !added)
      throw DataError(where(job_, c, "account_id") + " does not belong to key " + job_.key);
    std::int64_t tx_id = to_int(job_, c, c.op == 'D' ? c.old_row : row, bank::kTxId);
    auto& doc = tx_docs_[tx_id];
    Decimal d;
    if (removed) {
      d = signed_amount(job_, c, c.old_row).negated();
      dirty_window_ = true;
      if (c.op == 'D') {
        doc = TxDocState{};
        doc.tombstone = true;
      }
      if (c.op == 'U' && !added) doc.left.push_back(account_id_);
    }
    if (added) {
      d = add(job_, d, signed_amount(job_, c, row), acct_name_ + " balance");
      TxEntry e{tx_id, text(job_, c, row, bank::kTxKind), to_decimal(job_, c, row, bank::kTxAmount),
                to_time_us(job_, c, row, bank::kTxCreatedAt)};
      doc.tombstone = false;
      doc.full = true;
      doc.account_id = account_id_;
      doc.entry = e;
      doc.transfer_id = row[bank::kTxTransferId].kind == Value::Text
                            ? std::optional<std::string>(row[bank::kTxTransferId].text)
                            : std::nullopt;
      if (c.op == 'I')
        new_entries_.push_back(std::move(e));
      else
        dirty_window_ = true;
    }
    job_delta_ = add(job_, job_delta_, d, acct_name_ + " balance");
    unassigned_ = add(job_, unassigned_, d, acct_name_ + " balance");
  }

  // The account leaves its owner (deleted, or moved to another user or currency): its balance
  // leaves the owner's totals.
  void leave_owner() {
    users_[acct_.user_id].member = false;
    users_[acct_.user_id].counts[acct_.currency] -= 1;
    if (!acct_.balance.is_zero()) credit_owner(acct_.balance.negated());
  }

  void account_change(const Change& c) {
    account_changed_ = true;
    settle();
    const bool live = acct_.exists && !acct_.deleted;
    if (c.op == 'D') {
      if (live) leave_owner();
      acct_.deleted = true;
      return;
    }
    auto row = effective_new_row(c);
    std::int64_t new_user = to_int(job_, c, row, bank::kAcctUserId);
    std::string new_cur = trim_right(text(job_, c, row, bank::kAcctCurrency));
    if (row[bank::kAcctCreatedAt].kind == Value::Text)
      created_us_ = to_time_us(job_, c, row, bank::kAcctCreatedAt);
    if (live && acct_.user_id == new_user && acct_.currency == new_cur) return;
    if (live) leave_owner();  // its balance moves with it
    acct_.exists = true;
    acct_.deleted = false;
    acct_.user_id = new_user;
    acct_.currency = new_cur;
    users_[new_user].member = true;
    users_[new_user].counts[new_cur] += 1;
    credit_owner(acct_.balance);  // makes the currency appear (0 for a new account)
  }

  void emit_transactions(WritePlan& plan) const {
    for (auto& [tx_id, st] : tx_docs_) {
      if (st.tombstone || st.full) {
        plan.transactions.push_back(
            ensure(tx_id, [](bson_t* d) { BSON_APPEND_BOOL(d, "deleted", false); }));
        plan.transactions.push_back(transaction_update(tx_id, st));
      }
      for (auto left_acct : st.left) {
        // Unguarded and idempotent: $max of the LSN at which it left that account.
        Statement s;
        s.filter = make_bson();
        BSON_APPEND_INT64(s.filter.get(), "_id", tx_id);
        s.update = make_bson();
        bson_t mx;
        bson_append_document_begin(s.update.get(), "$max", -1, &mx);
        std::string path = "left." + std::to_string(left_acct);
        BSON_APPEND_INT64(&mx, path.c_str(), static_cast<std::int64_t>(lsn_));
        bson_append_document_end(s.update.get(), &mx);
        plan.transactions.push_back(std::move(s));
      }
    }
  }

  Statement transaction_update(std::int64_t tx_id, const TxDocState& st) const {
    Statement s;
    s.filter = guarded_filter(tx_id, "applied_lsn", lsn_);
    s.update = make_bson();
    bson_t set;
    bson_append_document_begin(s.update.get(), "$set", -1, &set);
    if (st.full) {
      BSON_APPEND_INT64(&set, "account_id", st.account_id);
      BSON_APPEND_UTF8(&set, "kind", st.entry.kind.c_str());
      append_decimal(&set, "amount", st.entry.amount);
      BSON_APPEND_DATE_TIME(&set, "created_at", floor_ms(st.entry.created_at_us));
      BSON_APPEND_INT64(&set, "created_at_us", st.entry.created_at_us);
      if (st.transfer_id)
        BSON_APPEND_UTF8(&set, "transfer_id", st.transfer_id->c_str());
      else
        BSON_APPEND_NULL(&set, "transfer_id");
    }
    BSON_APPEND_BOOL(&set, "deleted", st.tombstone);
    BSON_APPEND_INT64(&set, "applied_lsn", static_cast<std::int64_t>(lsn_));
    bson_append_document_end(s.update.get(), &set);
    return s;
  }

  // users collection: one guarded update per user this account's job touched
  void emit_users(WritePlan& plan) const {
    const std::string acct_path = "acct_lsn." + std::to_string(account_id_);
    for (auto& [user_id, ud] : users_) {
      plan.users.push_back(ensure_user(user_id));
      plan.users.push_back(user_update(user_id, ud, acct_path, plan));
      // A currency the user no longer holds any account in leaves `balances` (its total is 0 by
      // then). Conditional on the count, so it is idempotent and safe against another account's
      // key adding the currency back concurrently: each statement is atomic on the document.
      for (auto& [cur, n] : ud.counts)
        if (n < 0) plan.users.push_back(drop_currency(user_id, cur));
    }
  }

  Statement user_update(std::int64_t user_id, const UserDelta& ud, const std::string& acct_path,
                        WritePlan& plan) const {
    Statement s;
    s.filter = guarded_filter(user_id, acct_path, lsn_);
    // A user document loaded from a snapshot (reconcile/) carries floor_lsn: no account's job
    // below it applies, including accounts the user no longer had at the snapshot.
    append_lsn_not(s.filter.get(), "floor_lsn", "$gte", lsn_);
    if (auto b = totals_before_.find(user_id); b != totals_before_.end() && !ud.balances.empty()) {
      append_exact_bounds(s.filter.get(), ud.balances, b->second);
      WritePlan::TotalCheck check{user_id, account_id_, lsn_, {}};
      for (auto& [cur, d] : ud.balances)
        check.currencies += (check.currencies.empty() ? "" : ", ") + cur + " " +
                            (d.sign() < 0 ? "" : "+") + d.to_string();
      plan.total_checks.push_back(std::move(check));
    }
    s.update = make_bson();
    bool any_count = false;
    for (auto& [cur, n] : ud.counts) any_count = any_count || n != 0;
    if (!ud.balances.empty() || any_count) {
      bson_t inc;
      bson_append_document_begin(s.update.get(), "$inc", -1, &inc);
      for (auto& [cur, d] : ud.balances) append_decimal(&inc, ("balances." + cur).c_str(), d);
      for (auto& [cur, n] : ud.counts)
        if (n != 0) BSON_APPEND_INT32(&inc, ("account_count." + cur).c_str(), n);
      bson_append_document_end(s.update.get(), &inc);
    }
    if (ud.member) {
      bson_t op;
      bson_append_document_begin(s.update.get(), *ud.member ? "$addToSet" : "$pull", -1, &op);
      BSON_APPEND_INT64(&op, "accounts", account_id_);
      bson_append_document_end(s.update.get(), &op);
    }
    bson_t set;
    bson_append_document_begin(s.update.get(), "$set", -1, &set);
    BSON_APPEND_INT64(&set, acct_path.c_str(), static_cast<std::int64_t>(lsn_));
    bson_append_document_end(s.update.get(), &set);
    return s;
  }

  static Statement drop_currency(std::int64_t user_id, const std::string& cur) {
    Statement drop;
    drop.filter = make_bson();
    BSON_APPEND_INT64(drop.filter.get(), "_id", user_id);
    BSON_APPEND_INT32(drop.filter.get(), ("account_count." + cur).c_str(), 0);
    drop.update = make_bson();
    bson_t unset;
    bson_append_document_begin(drop.update.get(), "$unset", -1, &unset);
    BSON_APPEND_UTF8(&unset, ("balances." + cur).c_str(), "");
    BSON_APPEND_UTF8(&unset, ("account_count." + cur).c_str(), "");
    bson_append_document_end(drop.update.get(), &unset);
    return drop;
  }

  // accounts collection: last, so a document here means the whole job is in MongoDB
  void emit_account(WritePlan& plan) const {
    plan.accounts.push_back(ensure(account_id_, [](bson_t* d) {
      append_decimal(d, "balance", Decimal());
      bson_t arr;
      bson_append_array_begin(d, "last_transactions", -1, &arr);
      bson_append_array_end(d, &arr);
    }));
    Statement s;
    s.filter = guarded_filter(account_id_, "applied_lsn", lsn_);
    s.update = make_bson();
    if (!job_delta_.is_zero()) {
      bson_t inc;
      bson_append_document_begin(s.update.get(), "$inc", -1, &inc);
      append_decimal(&inc, "balance", job_delta_);
      bson_append_document_end(s.update.get(), &inc);
    }
    if (!new_entries_.empty()) push_entries(s.update.get());
    bson_t set;
    bson_append_document_begin(s.update.get(), "$set", -1, &set);
    BSON_APPEND_INT64(&set, "applied_lsn", static_cast<std::int64_t>(lsn_));
    if (account_changed_) {
      BSON_APPEND_BOOL(&set, "deleted", acct_.deleted);
      if (!acct_.deleted || acct_.user_id) {
        BSON_APPEND_INT64(&set, "user_id", acct_.user_id);
        BSON_APPEND_UTF8(&set, "currency", acct_.currency.c_str());
      }
      if (created_us_) BSON_APPEND_DATE_TIME(&set, "created_at", floor_ms(*created_us_));
    }
    bson_append_document_end(s.update.get(), &set);
    plan.accounts.push_back(std::move(s));
  }

  // {$push: {last_transactions: {$each: [...], $sort: {created_at_us: -1, id: -1}, $slice: N}}}
  void push_entries(bson_t* update) const {
    bson_t push, lt, each, sort;
    bson_append_document_begin(update, "$push", -1, &push);
    bson_append_document_begin(&push, "last_transactions", -1, &lt);
    bson_append_array_begin(&lt, "$each", -1, &each);
    for (std::size_t i = 0; i < new_entries_.size(); ++i)
      append_entry(&each, std::to_string(i).c_str(), new_entries_[i]);
    bson_append_array_end(&lt, &each);
    bson_append_document_begin(&lt, "$sort", -1, &sort);
    BSON_APPEND_INT32(&sort, "created_at_us", -1);
    BSON_APPEND_INT32(&sort, "id", -1);
    bson_append_document_end(&lt, &sort);
    BSON_APPEND_INT32(&lt, "$slice", bank::kLastTransactions);
    bson_append_document_end(&push, &lt);
    bson_append_document_end(update, &push);
  }

  const Job& job_;
  const Lsn lsn_;
  const std::int64_t account_id_;
  AccountSnapshot& acct_;  // running state across the batch
  std::unordered_map<std::int64_t, UserSnapshot>& user_snapshots_;
  const std::string acct_name_;

  Decimal job_delta_;   // balance change of this account in this job (the accounts $inc)
  Decimal unassigned_;  // part of it not yet credited to the owner's user document
  bool dirty_window_ = false, account_changed_ = false;
  std::vector<TxEntry> new_entries_;
  std::map<std::int64_t, TxDocState> tx_docs_;
  std::map<std::int64_t, UserDelta> users_;
  std::optional<std::int64_t> created_us_;
  std::map<std::int64_t, std::map<std::string, Decimal>> totals_before_, totals_after_;
};

}  // namespace

void BankFold::fold_account_job(const Job& job, std::int64_t account_id, WritePlan& plan) {
  AccountSnapshot& acct = accounts_[account_id];
  // A window recompute runs after the batch's writes, so it is stamped with the account's last
  // job in the batch (the recompute is refused once the account holds a later job).
  if (auto it = plan.dirty_windows.find(account_id); it != plan.dirty_windows.end())
    it->second = std::max(it->second, job.commit_lsn);
  // The account document already holds this job: MongoDB acknowledged the accounts bulk, which
  // is written after the transactions and users bulks, so every document of the job has it.
  // Only last_transactions may still need its recompute (a crash between the two phases).
  if (acct.exists && acct.applied_lsn >= job.commit_lsn) {
    for (const auto& c : job.changes)
      if (c.table == bank::kTransactions && c.op != 'I') {
        auto& m = plan.dirty_windows[account_id];
        m = std::max(m, job.commit_lsn);
      }
    return;
  }
  AccountJobFold f(job, account_id, acct, users_);
  f.read_changes();
  f.user_totals();
  f.emit(plan);
}

}  // namespace walfold::projections
