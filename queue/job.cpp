#include "queue/job.h"

#include <charconv>

#include "common/error.h"

namespace walfold::queue {
namespace {

constexpr std::string_view kMagic = "J2";
// Bodies written by walfold before the generic job format (a bank model letter per change).
constexpr std::string_view kOldMagic = "J1";
// More columns than any table has: a count past it is a corrupt body, not a wide table.
constexpr std::uint64_t kMaxColumns = 1600;  // PostgreSQL's own limit (MaxHeapAttributeNumber)

void put_num(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
  out.push_back(',');
}

void put_str(std::string& out, std::string_view s) {
  put_num(out, s.size());
  out.append(s);
}

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  std::uint64_t num() {
    std::uint64_t v = 0;
    auto r = std::from_chars(s_.data() + pos_, s_.data() + s_.size(), v);
    if (r.ec != std::errc{} || r.ptr == s_.data() + s_.size() || *r.ptr != ',')
      fail("expected a number");
    pos_ = static_cast<std::size_t>(r.ptr - s_.data()) + 1;
    return v;
  }
  std::string_view str() {
    auto n = num();
    if (n > s_.size() - pos_) fail("string length past the end");
    auto v = s_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  char ch() {
    if (pos_ >= s_.size()) fail("unexpected end");
    return s_[pos_++];
  }
  bool done() const { return pos_ == s_.size(); }
  [[noreturn]] void fail(const char* what) const {
    throw DataError("malformed job at byte " + std::to_string(pos_) + ": " + what);
  }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

void put_row(std::string& out, const std::vector<Value>& row) {
  put_num(out, row.size());
  for (const auto& v : row) {
    out.push_back(static_cast<char>(v.kind));
    if (v.kind == Value::Text) put_str(out, v.text);
  }
}

std::vector<Value> get_row(Reader& r) {
  auto n = r.num();
  if (n > kMaxColumns) r.fail("column count past PostgreSQL's limit");
  std::vector<Value> row(n);
  for (auto& v : row) {
    char k = r.ch();
    if (k != 'n' && k != 'u' && k != 't' && k != 'm') r.fail("bad value kind");
    v.kind = static_cast<Value::Kind>(k);
    if (k == 't') v.text = r.str();
  }
  return row;
}

}  // namespace

std::string encode_job(const Job& job) {
  std::string out;
  out.reserve(64 + job.changes.size() * 96);
  out.append(kMagic);
  put_num(out, job.commit_lsn);
  put_num(out, job.end_lsn);
  put_num(out, static_cast<std::uint64_t>(job.commit_time_us));
  put_str(out, job.key);
  put_num(out, job.changes.size());
  for (const auto& c : job.changes) {
    put_num(out, c.table);
    out.push_back(c.op);
    put_row(out, c.new_row);
    put_row(out, c.old_row);
  }
  return out;
}

Job decode_job(std::string_view encoded) {
  if (encoded.substr(0, kOldMagic.size()) == kOldMagic)
    throw DataError(
        "job body in the old format " + std::string(kOldMagic) +
        " (written by walfold before the generic job format); this walfold reads " +
        std::string(kMagic) +
        " only: let the old version drain the queue before upgrading, or rebuild with `walfold "
        "reconcile --full` (README.md, Upgrading)");
  if (encoded.substr(0, kMagic.size()) != kMagic)
    throw DataError("malformed job: does not start with " + std::string(kMagic));
  Reader r(encoded.substr(kMagic.size()));
  Job job;
  job.commit_lsn = r.num();
  job.end_lsn = r.num();
  job.commit_time_us = static_cast<std::int64_t>(r.num());
  job.key = std::string(r.str());
  auto n = r.num();
  if (n > encoded.size()) r.fail("change count past the end");
  job.changes.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    Change c;
    auto table = r.num();
    if (table > UINT32_MAX) r.fail("table index out of range");
    c.table = static_cast<std::uint32_t>(table);
    c.op = r.ch();
    if (c.op != 'I' && c.op != 'U' && c.op != 'D') r.fail("bad operation");
    c.new_row = get_row(r);
    c.old_row = get_row(r);
    job.changes.push_back(std::move(c));
  }
  if (!r.done()) r.fail("trailing bytes");
  return job;
}

}  // namespace walfold::queue
