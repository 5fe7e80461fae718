#include "checkpoint/store.h"

#include <fcntl.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <utility>

#include "common/error.h"

namespace walfold::checkpoint {
namespace {

constexpr const char* kCollection = "checkpoints";
constexpr int kHistoryKeep = 1000;  // entries kept in MongoDB and in the history file

using mongo::Bson;
using mongo::make_bson;

void append_history_entry(bson_t* arr, const char* idx, const HistoryEntry& e) {
  bson_t d;
  bson_append_document_begin(arr, idx, -1, &d);
  BSON_APPEND_INT64(&d, "lsn", static_cast<std::int64_t>(e.lsn));
  BSON_APPEND_UTF8(&d, "lsn_text", format_lsn(e.lsn).c_str());
  BSON_APPEND_DATE_TIME(&d, "at", e.at_ms);
  BSON_APPEND_UTF8(&d, "event", e.event.c_str());
  bson_append_document_end(arr, &d);
}

// {$push: {history: {$each: [e], $slice: -keep}}}
void append_push(bson_t* update, const HistoryEntry& e) {
  bson_t push, h, each;
  bson_append_document_begin(update, "$push", -1, &push);
  bson_append_document_begin(&push, "history", -1, &h);
  bson_append_array_begin(&h, "$each", -1, &each);
  append_history_entry(&each, "0", e);
  bson_append_array_end(&h, &each);
  BSON_APPEND_INT32(&h, "$slice", -kHistoryKeep);
  bson_append_document_end(&push, &h);
  bson_append_document_end(update, &push);
}

std::string errno_text(int e) {
  return std::string(std::strerror(e)) + " (errno " + std::to_string(e) + ")";
}

// An owned file descriptor: closed on every path out, an exception included. close_checked()
// is the close whose failure matters (a file written for durability); the destructor's close
// is for the paths that already failed.
class Fd {
 public:
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  // close(2)'s result; the descriptor is released either way (Linux frees it even on EINTR/EIO).
  int close_checked() noexcept { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

// Writes all of `content` to `fd`; FileError (Io) naming `path` when the write fails.
void write_all(int fd, const std::string& path, const std::string& content) {
  const char* p = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      throw FileError(FileError::Io, "state_dir: writing " + path + " failed: " + errno_text(e));
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace

void write_file_durably(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (!fd.valid()) {
    int e = errno;
    throw FileError(FileError::CannotCreate,
                    "state_dir: cannot create " + tmp + ": " + errno_text(e) +
                        " (state_dir must be a directory walfold's user may write)");
  }
  write_all(fd.get(), tmp, content);
  if (::fsync(fd.get()) != 0) {
    int e = errno;
    throw FileError(FileError::Io, "state_dir: flushing " + tmp + " failed: " + errno_text(e));
  }
  if (fd.close_checked() != 0)
    throw FileError(FileError::Io, "state_dir: closing " + tmp + " failed: " + errno_text(errno));
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw FileError(FileError::CannotCreate,
                    "state_dir: cannot rename " + tmp + " to " + path + ": " + errno_text(errno));
  auto slash = path.rfind('/');
  Fd dir(::open(slash == std::string::npos ? "." : path.substr(0, slash).c_str(),
                O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.valid()) ::fsync(dir.get());
}

namespace {

// The whole file, or nullopt when it does not exist. Any other failure to read it (permissions,
// a directory in its place, an I/O error) is a FileError naming the path and errno: treating an
// unreadable checkpoint as missing would silently skip the checks it exists for.
std::optional<std::string> read_file_if_exists(const std::string& path, const char* what) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    int e = errno;
    if (e == ENOENT) return std::nullopt;
    throw FileError(FileError::Io, "state_dir: cannot read " + std::string(what) + " " + path +
                                       ": " + errno_text(e));
  }
  std::string out;
  char buf[8192];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      throw FileError(FileError::Io, "state_dir: cannot read " + std::string(what) + " " + path +
                                         ": " + errno_text(e));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

void ensure_dir(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      throw FileError(FileError::CannotCreate, "state_dir " + dir + " is not a directory");
    return;
  }
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST)
    throw FileError(FileError::CannotCreate,
                    "state_dir " + dir + " does not exist and cannot be created: " +
                        errno_text(errno) + " (under systemd, StateDirectory=walfold creates it)");
}

Checkpoint parse_doc(const bson_t* doc) {
  Checkpoint c;
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) return c;
  while (bson_iter_next(&it)) {
    std::string_view k = bson_iter_key(&it);
    if (k == "_id" && BSON_ITER_HOLDS_UTF8(&it))
      c.identity.slot = bson_iter_utf8(&it, nullptr);
    else if (k == "system_id" && BSON_ITER_HOLDS_UTF8(&it))
      c.identity.system_id = bson_iter_utf8(&it, nullptr);
    else if (k == "slot_created_lsn")
      c.identity.created_lsn = static_cast<Lsn>(mongo::get_int64(it));
    else if (k == "slot_created_at" && BSON_ITER_HOLDS_DATE_TIME(&it))
      c.identity.created_at_ms = bson_iter_date_time(&it);
    else if (k == "lsn")
      c.lsn = static_cast<Lsn>(mongo::get_int64(it));
    else if (k == "saved_at" && BSON_ITER_HOLDS_DATE_TIME(&it))
      c.saved_at_ms = bson_iter_date_time(&it);
    else if (k == "loading")
      c.loading = bson_iter_as_bool(&it);
    else if (k == "rebuilt_lsn")
      c.rebuilt_lsn = static_cast<Lsn>(mongo::get_int64(it));
    else if (k == "history" && BSON_ITER_HOLDS_ARRAY(&it)) {
      bson_iter_t arr;
      bson_iter_recurse(&it, &arr);
      while (bson_iter_next(&arr)) {
        bson_iter_t e;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &e)) continue;
        HistoryEntry h;
        while (bson_iter_next(&e)) {
          std::string_view f = bson_iter_key(&e);
          if (f == "lsn")
            h.lsn = static_cast<Lsn>(mongo::get_int64(e));
          else if (f == "at" && BSON_ITER_HOLDS_DATE_TIME(&e))
            h.at_ms = bson_iter_date_time(&e);
          else if (f == "event" && BSON_ITER_HOLDS_UTF8(&e))
            h.event = bson_iter_utf8(&e, nullptr);
        }
        c.history.push_back(std::move(h));
      }
    }
  }
  return c;
}

}  // namespace

DataError slot_gone_error(const std::string& slot, const Checkpoint& c) {
  return DataError("replication slot '" + slot + "' is gone: walfold's checkpoint is at " +
                   format_lsn(c.lsn) + " (slot created at " + format_lsn(c.identity.created_lsn) +
                   " on " + format_time_ms(c.identity.created_at_ms) +
                   "), and the changes after it cannot be streamed any more. Refusing to skip "
                   "ahead: rebuild the read model with `walfold reconcile --full`");
}

DataError missing_slot_error(const std::string& slot, const std::optional<Checkpoint>& mongo,
                             const std::optional<Checkpoint>& local, const std::string& state_file,
                             const std::string& system_id) {
  if (!mongo && local && !local->identity.system_id.empty() &&
      local->identity.system_id != system_id)
    return DataError(
        state_file + " holds a checkpoint of slot '" + slot + "' on another PostgreSQL system (" +
        local->identity.system_id + ", slot created on " +
        format_time_ms(local->identity.created_at_ms) + "), but this server is system " +
        system_id + " and MongoDB holds no checkpoint: a leftover of another deployment. If this " +
        "is a new deployment, remove " + state_file + " and its .history file (or give it its " +
        "own state_dir) and start again; if MongoDB's read model should follow this server, " +
        "rebuild it with `walfold reconcile --full`");
  return slot_gone_error(slot, mongo ? *mongo : local ? *local : Checkpoint{});
}

void check_state_dir_owner(const std::string& state_dir, const std::string& command_line) {
  if (::geteuid() != 0) return;  // another user cannot create files the owner cannot replace
  struct stat st {};
  if (::stat(state_dir.c_str(), &st) != 0 || st.st_uid == 0) return;
  std::string owner = std::to_string(st.st_uid);
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(st.st_uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr)
    owner = found->pw_name;
  throw PermissionError(
      "state_dir " + state_dir + " belongs to user " + owner + " (uid " +
      std::to_string(st.st_uid) +
      "), and this command would write its checkpoint files there as root, which that user "
      "(the service) could then not update. Run it as the directory's owner: runuser -u " +
      owner + " -- walfold " + command_line);
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string format_time_ms(std::int64_t ms) {
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

Store::Store(const Config& cfg, mongo::MongoPool& pool)
    : cfg_(cfg),
      pool_(pool),
      state_file_(cfg.state_dir + "/" + cfg.postgres.slot + ".checkpoint"),
      history_file_(cfg.state_dir + "/" + cfg.postgres.slot + ".history") {}

std::optional<Checkpoint> Store::load_mongo() {
  mongo::MongoPool::Client client(pool_);
  mongo::Collection coll(client.collection(kCollection));
  auto filter = make_bson();
  BSON_APPEND_UTF8(filter.get(), "_id", cfg_.postgres.slot.c_str());
  mongo::Cursor cur(mongoc_collection_find_with_opts(coll.get(), filter.get(), nullptr, nullptr));
  const bson_t* doc;
  std::optional<Checkpoint> out;
  if (mongoc_cursor_next(cur.get(), &doc)) out = parse_doc(doc);
  bson_error_t err;
  if (mongoc_cursor_error(cur.get(), &err))
    mongo::throw_mongo_error(pool_, "reading the checkpoint", err);
  return out;
}

std::optional<Checkpoint> Store::load_state_dir() {
  auto content = read_file_if_exists(state_file_, "the checkpoint file");
  if (!content) return std::nullopt;
  std::istringstream in(*content);
  Checkpoint c;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string::npos)
      throw ConfigError(state_file_ + ":" + std::to_string(lineno) + ": expected key=value");
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    auto lsn = [&]() {
      auto l = parse_lsn(v);
      if (!l)
        throw ConfigError(state_file_ + ":" + std::to_string(lineno) + ": " + k + " '" + v +
                          "' is not an LSN");
      return *l;
    };
    if (k == "slot")
      c.identity.slot = v;
    else if (k == "system_id")
      c.identity.system_id = v;
    else if (k == "slot_created_lsn")
      c.identity.created_lsn = lsn();
    else if (k == "slot_created_at_ms")
      c.identity.created_at_ms = std::stoll(v);
    else if (k == "lsn")
      c.lsn = lsn();
    else if (k == "saved_at_ms")
      c.saved_at_ms = std::stoll(v);
    else if (k == "loading")
      c.loading = v == "1";
    else if (k == "rebuilt_lsn")
      c.rebuilt_lsn = lsn();
  }
  return c;
}

std::vector<HistoryEntry> Store::read_history_file() {
  std::vector<HistoryEntry> out;
  auto content = read_file_if_exists(history_file_, "the checkpoint history");
  if (!content) return out;
  std::istringstream in(*content);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string at, lsn, event;
    f >> at >> lsn;
    std::getline(f, event);
    auto l = parse_lsn(lsn);
    if (!l) continue;
    HistoryEntry e;
    e.lsn = *l;
    e.at_ms = 0;
    e.event = at + (event.empty() ? "" : " " + event.substr(1));
    out.push_back(std::move(e));
  }
  return out;
}

void Store::write_state_file(const Checkpoint& c) {
  ensure_dir(cfg_.state_dir);
  std::ostringstream o;
  o << "# walfold checkpoint: written by walfold after MongoDB has it; do not edit\n"
    << "slot=" << c.identity.slot << "\n"
    << "system_id=" << c.identity.system_id << "\n"
    << "slot_created_lsn=" << format_lsn(c.identity.created_lsn) << "\n"
    << "slot_created_at_ms=" << c.identity.created_at_ms << "\n"
    << "lsn=" << format_lsn(c.lsn) << "\n"
    << "saved_at_ms=" << c.saved_at_ms << "\n"
    << "saved_at=" << format_time_ms(c.saved_at_ms) << "\n"
    << "loading=" << (c.loading ? 1 : 0) << "\n"
    << "rebuilt_lsn=" << format_lsn(c.rebuilt_lsn) << "\n";
  write_file_durably(state_file_, o.str());
}

void Store::append_history_file(const HistoryEntry& e) {
  ensure_dir(cfg_.state_dir);
  {
    Fd fd(::open(history_file_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (!fd.valid()) {
      int err = errno;
      throw FileError(FileError::CannotCreate,
                      "state_dir: cannot append to " + history_file_ + ": " + errno_text(err));
    }
    write_all(fd.get(), history_file_,
              format_time_ms(e.at_ms) + " " + format_lsn(e.lsn) + " " + e.event + "\n");
    if (fd.close_checked() != 0)
      throw FileError(FileError::Io,
                      "state_dir: closing " + history_file_ + " failed: " + errno_text(errno));
  }
  // Keep the file bounded: when it holds twice the limit, keep the newest half. The file is
  // read once to count its lines, and again only when it is trimmed.
  if (history_lines_ < 0) {
    history_lines_ = 0;
    std::istringstream in(
        read_file_if_exists(history_file_, "the checkpoint history").value_or(""));
    for (std::string line; std::getline(in, line);) ++history_lines_;
  } else {
    ++history_lines_;
  }
  if (history_lines_ <= 2 * kHistoryKeep) return;
  std::istringstream in(read_file_if_exists(history_file_, "the checkpoint history").value_or(""));
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > static_cast<std::size_t>(kHistoryKeep)) lines.pop_front();
  }
  std::string content;
  for (const auto& l : lines) content += l + "\n";
  write_file_durably(history_file_, content);
  history_lines_ = static_cast<long>(lines.size());
}

void Store::begin(const SlotIdentity& identity, bool loading, const std::string& event) {
  Checkpoint c;
  c.identity = identity;
  c.lsn = identity.created_lsn;
  c.saved_at_ms = now_ms();
  c.loading = loading;
  HistoryEntry e{identity.created_lsn, c.saved_at_ms, event};
  {
    mongo::MongoPool::Client client(pool_);
    mongo::Collection coll(client.collection(kCollection));
    auto filter = make_bson();
    BSON_APPEND_UTF8(filter.get(), "_id", identity.slot.c_str());
    auto update = make_bson();
    bson_t set;
    bson_append_document_begin(update.get(), "$set", -1, &set);
    BSON_APPEND_UTF8(&set, "system_id", identity.system_id.c_str());
    BSON_APPEND_INT64(&set, "slot_created_lsn", static_cast<std::int64_t>(identity.created_lsn));
    BSON_APPEND_UTF8(&set, "slot_created_lsn_text", format_lsn(identity.created_lsn).c_str());
    BSON_APPEND_DATE_TIME(&set, "slot_created_at", identity.created_at_ms);
    BSON_APPEND_INT64(&set, "lsn", static_cast<std::int64_t>(c.lsn));
    BSON_APPEND_UTF8(&set, "lsn_text", format_lsn(c.lsn).c_str());
    BSON_APPEND_DATE_TIME(&set, "saved_at", c.saved_at_ms);
    BSON_APPEND_BOOL(&set, "loading", loading);
    BSON_APPEND_INT64(&set, "rebuilt_lsn", 0);
    bson_append_document_end(update.get(), &set);
    append_push(update.get(), e);
    auto opts = make_bson();
    BSON_APPEND_BOOL(opts.get(), "upsert", true);
    bson_error_t err;
    if (!mongoc_collection_update_one(coll.get(), filter.get(), update.get(), opts.get(), nullptr,
                                      &err))
      mongo::throw_mongo_error(pool_, "saving the checkpoint", err);
  }
  write_state_file(c);
  append_history_file(e);
  last_history_ms_ = c.saved_at_ms;
  last_ = c;
}

void Store::push_history(const HistoryEntry& e, const char* set_field, Lsn value) {
  mongo::MongoPool::Client client(pool_);
  mongo::Collection coll(client.collection(kCollection));
  auto filter = make_bson();
  BSON_APPEND_UTF8(filter.get(), "_id", cfg_.postgres.slot.c_str());
  auto update = make_bson();
  bson_t set;
  bson_append_document_begin(update.get(), "$set", -1, &set);
  BSON_APPEND_INT64(&set, "lsn", static_cast<std::int64_t>(e.lsn));
  BSON_APPEND_UTF8(&set, "lsn_text", format_lsn(e.lsn).c_str());
  BSON_APPEND_DATE_TIME(&set, "saved_at", e.at_ms);
  if (set_field) {
    BSON_APPEND_BOOL(&set, "loading", false);
    BSON_APPEND_INT64(&set, set_field, static_cast<std::int64_t>(value));
  }
  bson_append_document_end(update.get(), &set);
  if (!e.event.empty()) append_push(update.get(), e);
  bson_error_t err;
  mongo::StackBson reply;
  bool ok = mongoc_collection_update_one(coll.get(), filter.get(), update.get(), nullptr,
                                         reply.get(), &err);
  bson_iter_t it;
  std::int64_t matched = 1;
  if (ok && bson_iter_init_find(&it, reply.get(), "matchedCount")) matched = mongo::get_int64(it);
  if (!ok) mongo::throw_mongo_error(pool_, "saving the checkpoint", err);
  if (matched == 0)
    throw DataError("the checkpoint of slot '" + cfg_.postgres.slot + "' vanished from MongoDB (" +
                    pool_.address() + ", database '" + cfg_.mongodb.database +
                    "'): was the read model dropped? Refusing to confirm anything; run "
                    "`walfold reconcile --full`");
}

void Store::finish_load(Lsn lsn, const std::string& event, Lsn rebuilt_lsn) {
  if (!last_) last_ = load_mongo();
  if (!last_) throw DataError("finish_load without a checkpoint record");
  HistoryEntry e{lsn, now_ms(), event};
  push_history(e, "rebuilt_lsn", rebuilt_lsn);
  last_->lsn = lsn;
  last_->saved_at_ms = e.at_ms;
  last_->loading = false;
  last_->rebuilt_lsn = rebuilt_lsn;
  write_state_file(*last_);
  append_history_file(e);
  last_history_ms_ = e.at_ms;
}

void Store::save(Lsn lsn) {
  if (!last_) last_ = load_mongo();
  if (!last_) throw DataError("saving a checkpoint before the slot's record exists");
  if (last_->lsn == lsn) return;
  const auto now = now_ms();
  const bool to_history = now - last_history_ms_ >= cfg_.reader.checkpoint_history_interval.count();
  HistoryEntry e{lsn, now, to_history ? "checkpoint" : ""};
  push_history(e, nullptr, 0);
  last_->lsn = lsn;
  last_->saved_at_ms = now;
  write_state_file(*last_);
  if (to_history) {
    append_history_file(e);
    last_history_ms_ = now;
  }
}

void Store::forget() {
  {
    mongo::MongoPool::Client client(pool_);
    mongo::Collection coll(client.collection(kCollection));
    auto filter = make_bson();
    BSON_APPEND_UTF8(filter.get(), "_id", cfg_.postgres.slot.c_str());
    bson_error_t err;
    if (!mongoc_collection_delete_one(coll.get(), filter.get(), nullptr, nullptr, &err))
      mongo::throw_mongo_error(pool_, "removing the checkpoint", err);
  }
  if (::unlink(state_file_.c_str()) != 0 && errno != ENOENT)
    throw FileError(FileError::CannotCreate,
                    "state_dir: cannot remove " + state_file_ + ": " + errno_text(errno));
  last_.reset();
}

}  // namespace walfold::checkpoint
