// The bank's canonical form (read_model.h: BankCanonicalForm) from PostgreSQL and from MongoDB,
// and the printers of its records (canonical.h), which repair prints through too.
#include "projections/bank/canonical.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/decimal.h"
#include "common/error.h"
#include "common/timestamp.h"
#include "mongo/handles.h"
#include "projections/bank/read_model.h"
#include "projections/bank/schema.h"

namespace walfold::projections::bank {
namespace {

// ---------------------------------------------------------------------------------------------
// The text format, shared by both sources so equal data prints equal bytes.

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void append_quoted(std::string& line, std::string_view text) {
  line.push_back('"');
  for (char c : text) {
    switch (c) {
      case '"':
        line += "\\\"";
        break;
      case '\\':
        line += "\\\\";
        break;
      case '\n':
        line += "\\n";
        break;
      default:
        line.push_back(c);
    }
  }
  line.push_back('"');
}

// Hands one whole record on, in its section, named by its id.
void emit(const RecordSink& each, const char* section, std::int64_t id, const std::string& text) {
  const std::string name = std::to_string(id);
  each(CanonicalRecord{section, name, text});
}

// ---------------------------------------------------------------------------------------------
// MongoDB

// Where a document value came from, for error messages.
class DocContext {
 public:
  DocContext(std::string_view where, const bson_t* doc) : where_(where) {
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "_id")) {
      if (BSON_ITER_HOLDS_INT64(&it))
        id_ = std::to_string(bson_iter_int64(&it));
      else if (BSON_ITER_HOLDS_INT32(&it))
        id_ = std::to_string(bson_iter_int32(&it));
      else
        id_ = "(non-integer)";
    }
  }
  [[noreturn]] void fail(std::string_view field, std::string_view problem) const {
    throw DataError(std::string(where_) + " document _id " + id_ + ": field " + std::string(field) +
                    " " + std::string(problem));
  }

  std::int64_t int64(const bson_iter_t* it, std::string_view field) const {
    if (BSON_ITER_HOLDS_INT64(it)) return bson_iter_int64(it);
    if (BSON_ITER_HOLDS_INT32(it)) return bson_iter_int32(it);
    fail(field, "is not an integer");
  }
  std::string_view utf8(const bson_iter_t* it, std::string_view field) const {
    if (!BSON_ITER_HOLDS_UTF8(it)) fail(field, "is not a string");
    std::uint32_t len = 0;
    const char* s = bson_iter_utf8(it, &len);
    return {s, len};
  }
  std::string decimal(const bson_iter_t* it, std::string_view field) const {
    if (!BSON_ITER_HOLDS_DECIMAL128(it)) fail(field, "is not a Decimal128");
    bson_decimal128_t dec;
    bson_iter_decimal128(it, &dec);
    char buf[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(&dec, buf);
    std::optional<std::string> c = Decimal::canonicalize(buf);
    if (!c) fail(field, std::string("is not a finite number: ") + buf);
    return *c;
  }

 private:
  std::string_view where_;
  std::string id_ = "(missing)";
};

bool is_deleted(const bson_t* doc) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, "deleted") && BSON_ITER_HOLDS_BOOL(&it) &&
         bson_iter_bool(&it);
}

TxLine read_tx(const DocContext& ctx, const bson_iter_t* element) {
  if (!BSON_ITER_HOLDS_DOCUMENT(element)) ctx.fail("last_transactions", "has a non-document entry");
  bson_iter_t it;
  if (!bson_iter_recurse(element, &it)) ctx.fail("last_transactions", "has a corrupt entry");
  TxLine tx;
  bool has_id = false, has_kind = false, has_amount = false, has_us = false;
  while (bson_iter_next(&it)) {
    std::string_view key = bson_iter_key(&it);
    if (key == "id") {
      tx.id = ctx.int64(&it, "last_transactions.id");
      has_id = true;
    } else if (key == "kind") {
      tx.kind = ctx.utf8(&it, "last_transactions.kind");
      has_kind = true;
    } else if (key == "amount") {
      tx.amount = ctx.decimal(&it, "last_transactions.amount");
      has_amount = true;
    } else if (key == "created_at_us") {
      tx.us = ctx.int64(&it, "last_transactions.created_at_us");
      has_us = true;
    }
  }
  if (!has_id) ctx.fail("last_transactions.id", "is missing");
  if (!has_kind) ctx.fail("last_transactions.kind", "is missing");
  if (!has_amount) ctx.fail("last_transactions.amount", "is missing");
  if (!has_us) ctx.fail("last_transactions.created_at_us", "is missing");
  return tx;
}

AccountRecord account_doc(const DocContext& ctx, const bson_t* doc) {
  std::optional<std::int64_t> id, user;
  std::optional<std::string> currency, balance;
  std::vector<TxLine> txs;
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) ctx.fail("(document)", "is corrupt");
  while (bson_iter_next(&it)) {
    std::string_view key = bson_iter_key(&it);
    if (key == "_id") {
      id = ctx.int64(&it, "_id");
    } else if (key == "user_id") {
      user = ctx.int64(&it, "user_id");
    } else if (key == "currency") {
      currency = std::string(ctx.utf8(&it, "currency"));
    } else if (key == "balance") {
      balance = ctx.decimal(&it, "balance");
    } else if (key == "last_transactions" && !BSON_ITER_HOLDS_NULL(&it)) {
      if (!BSON_ITER_HOLDS_ARRAY(&it)) ctx.fail("last_transactions", "is not an array");
      bson_iter_t arr;
      if (!bson_iter_recurse(&it, &arr)) ctx.fail("last_transactions", "is corrupt");
      while (bson_iter_next(&arr)) txs.push_back(read_tx(ctx, &arr));
    }
  }
  if (!id) ctx.fail("_id", "is missing");
  if (!user) ctx.fail("user_id", "is missing");
  if (!currency) ctx.fail("currency", "is missing");
  if (!balance) ctx.fail("balance", "is missing");
  return {*id, *user, std::move(*currency), std::move(*balance), std::move(txs)};
}

UserRecord user_doc(const DocContext& ctx, const bson_t* doc) {
  std::optional<std::int64_t> id;
  std::optional<std::string> name, email;
  std::vector<std::int64_t> accounts;
  std::map<std::string, std::string> totals;
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) ctx.fail("(document)", "is corrupt");
  while (bson_iter_next(&it)) {
    std::string_view key = bson_iter_key(&it);
    if (key == "_id") {
      id = ctx.int64(&it, "_id");
    } else if (key == "full_name") {
      name = std::string(ctx.utf8(&it, "full_name"));
    } else if (key == "email") {
      email = std::string(ctx.utf8(&it, "email"));
    } else if (key == "accounts" && !BSON_ITER_HOLDS_NULL(&it)) {
      if (!BSON_ITER_HOLDS_ARRAY(&it)) ctx.fail("accounts", "is not an array");
      bson_iter_t arr;
      if (!bson_iter_recurse(&it, &arr)) ctx.fail("accounts", "is corrupt");
      while (bson_iter_next(&arr)) accounts.push_back(ctx.int64(&arr, "accounts[]"));
    } else if (key == "balances" && !BSON_ITER_HOLDS_NULL(&it)) {
      if (!BSON_ITER_HOLDS_DOCUMENT(&it)) ctx.fail("balances", "is not a document");
      bson_iter_t sub;
      if (!bson_iter_recurse(&it, &sub)) ctx.fail("balances", "is corrupt");
      while (bson_iter_next(&sub)) {
        std::string currency(trim(bson_iter_key(&sub)));
        totals[currency] = ctx.decimal(&sub, "balances." + currency);
      }
    }
  }
  if (!id) ctx.fail("_id", "is missing");
  if (!name) ctx.fail("full_name", "is missing");
  if (!email) ctx.fail("email", "is missing");
  return {*id, std::move(*name), std::move(*email), std::move(accounts), std::move(totals)};
}

TransactionRecord transaction_doc(const DocContext& ctx, const bson_t* doc) {
  std::optional<std::int64_t> id, account, us;
  std::optional<std::string> kind, amount, transfer;
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) ctx.fail("(document)", "is corrupt");
  while (bson_iter_next(&it)) {
    std::string_view key = bson_iter_key(&it);
    if (key == "_id") {
      id = ctx.int64(&it, "_id");
    } else if (key == "account_id") {
      account = ctx.int64(&it, "account_id");
    } else if (key == "kind") {
      kind = std::string(ctx.utf8(&it, "kind"));
    } else if (key == "amount") {
      amount = ctx.decimal(&it, "amount");
    } else if (key == "created_at_us") {
      us = ctx.int64(&it, "created_at_us");
    } else if (key == "transfer_id" && !BSON_ITER_HOLDS_NULL(&it)) {
      transfer = std::string(ctx.utf8(&it, "transfer_id"));
    }
  }
  if (!id) ctx.fail("_id", "is missing");
  if (!account) ctx.fail("account_id", "is missing");
  if (!kind) ctx.fail("kind", "is missing");
  if (!amount) ctx.fail("amount", "is missing");
  if (!us) ctx.fail("created_at_us", "is missing");
  return {*id, *account, std::move(*kind), std::move(*amount), *us, std::move(transfer)};
}

void append_id_list(std::string& text, std::vector<std::int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  if (ids.empty()) text.push_back('-');
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i != 0) text.push_back(',');
    text += std::to_string(ids[i]);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The records (canonical.h)

std::string canonical_text(const AccountRecord& a) {
  std::string text = "account " + std::to_string(a.id) + " user " + std::to_string(a.user) +
                     " currency " + std::string(trim(a.currency)) + " balance " + a.balance + "\n";
  for (const TxLine& t : a.last) {
    text += "  tx " + std::to_string(t.id) + " " + t.kind + " " + t.amount + " " +
            format_timestamp_us(t.us) + "\n";
  }
  return text;
}

std::string canonical_text(const UserRecord& u) {
  std::string text = "user " + std::to_string(u.id) + " name ";
  append_quoted(text, u.name);
  text += " email ";
  append_quoted(text, u.email);
  text += " accounts ";
  append_id_list(text, u.accounts);
  text += " totals";
  if (u.totals.empty()) text += " -";
  for (const auto& [currency, amount] : u.totals) text += " " + currency + "=" + amount;
  return text + "\n";
}

std::string canonical_text(const TransactionRecord& t) {
  return "transaction " + std::to_string(t.id) + " account " + std::to_string(t.account) + " " +
         t.kind + " " + t.amount + " " + format_timestamp_us(t.us) + " transfer " +
         (t.transfer ? *t.transfer : std::string("-")) + "\n";
}

AccountRecord account_record(const AccountTruth& a) {
  AccountRecord r{a.id, a.user_id, a.currency, a.balance.canonical(), {}};
  for (const TxTruth& t : a.last)
    r.last.push_back({t.id, t.kind, t.amount.canonical(), t.created_at_us});
  return r;
}

UserRecord user_record(const UserTruth& u) {
  UserRecord r{u.id, u.full_name, u.email, u.accounts, {}};
  for (const auto& [currency, sum] : u.balances)
    r.totals.emplace(std::string(trim(currency)), sum.canonical());
  return r;
}

TransactionRecord transaction_record(const TxTruth& t) {
  return {t.id, t.account_id, t.kind, t.amount.canonical(), t.created_at_us, t.transfer_id};
}

AccountRecord account_record(std::string_view where, const bson_t* doc) {
  return account_doc(DocContext(where, doc), doc);
}

UserRecord user_record(std::string_view where, const bson_t* doc) {
  return user_doc(DocContext(where, doc), doc);
}

TransactionRecord transaction_record(std::string_view where, const bson_t* doc) {
  return transaction_doc(DocContext(where, doc), doc);
}

void BankCanonicalForm::from_postgres(PgRead& pg, const RecordSink& each) const {
  // The snapshot's own reader (snapshot.h): the rows the snapshot load writes and repair
  // compares with are the rows report and verify print, so the four read the tables one way.
  TruthReader truth(pg);
  truth.accounts(
      [&](AccountTruth&& a) { emit(each, "account", a.id, canonical_text(account_record(a))); });
  truth.users([&](UserTruth&& u) { emit(each, "user", u.id, canonical_text(user_record(u))); });
}

void BankCanonicalForm::from_mongo(DocumentScan& mongo, const RecordSink& each) const {
  mongo.scan("accounts", {"user_id", "currency", "balance", "last_transactions", "deleted"},
             [&](const Document& d) {
               if (is_deleted(d.bson)) return;
               const AccountRecord a = account_record(d.where, d.bson);
               emit(each, "account", a.id, canonical_text(a));
             });
  mongo.scan("users", {"full_name", "email", "accounts", "balances", "deleted"},
             [&](const Document& d) {
               if (is_deleted(d.bson)) return;
               const UserRecord u = user_record(d.where, d.bson);
               emit(each, "user", u.id, canonical_text(u));
             });
}

}  // namespace walfold::projections::bank
