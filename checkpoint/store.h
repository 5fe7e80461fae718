// The durable checkpoint: where the return path ends. Before the reader tells PostgreSQL that
// everything below LSN L is flushed (the slot's confirmed_flush_lsn), it saves L here, first in
// MongoDB (collection `checkpoints`, next to the read model it describes, so a restored read
// model brings its own checkpoint) and then in the state directory (`<state_dir>/<slot>.checkpoint`
// and `<slot>.history`). So PostgreSQL's confirmed position is never ahead of the saved one, and
// a slot whose confirmed position is ahead of it was moved by something else: a gap.
//
// The record also names the slot it belongs to (name, PostgreSQL system identifier, the LSN
// and time it was created), so a slot dropped and created again, or a server restored from
// another cluster, is recognised instead of silently streamed from.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/lsn.h"
#include "config/config.h"
#include "mongo/pool.h"

namespace walfold::checkpoint {

struct SlotIdentity {
  std::string slot;
  std::string system_id;           // IDENTIFY_SYSTEM's systemid
  Lsn created_lsn = 0;             // the slot's consistent point when walfold created it
  std::int64_t created_at_ms = 0;  // Unix ms
};

struct HistoryEntry {
  Lsn lsn = 0;
  std::int64_t at_ms = 0;
  std::string event;  // "checkpoint", "slot created", "snapshot loaded", "rebuilt", ...
};

struct Checkpoint {
  SlotIdentity identity;
  Lsn lsn = 0;  // everything below is folded into MongoDB
  std::int64_t saved_at_ms = 0;
  // Set while an initial snapshot or rebuild is loading: a crash leaves it set, and the next
  // start loads again instead of streaming over a half-loaded read model.
  bool loading = false;
  // The last rebuild (TRUNCATE of a bank table) loaded the read model at this LSN: commits
  // below it are already in the read model.
  Lsn rebuilt_lsn = 0;
  std::vector<HistoryEntry> history;  // oldest first
};

class Store {
 public:
  Store(const Config& cfg, mongo::MongoPool& pool);

  // The checkpoint MongoDB holds for this slot (authoritative for what the read model contains).
  std::optional<Checkpoint> load_mongo();
  // The copy in the state directory (no history; see read_history_file).
  std::optional<Checkpoint> load_state_dir();
  std::vector<HistoryEntry> read_history_file();

  // A new slot: writes its identity and creation position (MongoDB, then the state directory),
  // replacing any record of an earlier slot of the same name (the history is kept).
  void begin(const SlotIdentity& identity, bool loading, const std::string& event);
  // Marks the load finished at `lsn` (history event `event`).
  void finish_load(Lsn lsn, const std::string& event, Lsn rebuilt_lsn = 0);
  // Saves a new checkpoint position. Throws UnavailableError when MongoDB cannot be reached
  // (the caller must then not confirm `lsn` to PostgreSQL), ConfigError when the state
  // directory cannot be written (FileError: exit 73 or 74).
  void save(Lsn lsn);
  // Removes the record (MongoDB and state directory) — `reconcile --full` before a rebuild.
  void forget();

  const std::string& state_file() const { return state_file_; }

 private:
  void write_state_file(const Checkpoint& c);
  void append_history_file(const HistoryEntry& e);
  void push_history(const HistoryEntry& e, const char* set_field, Lsn value);

  const Config& cfg_;
  mongo::MongoPool& pool_;
  std::string state_file_, history_file_;
  std::optional<Checkpoint> last_;  // what this process saved last
  std::int64_t last_history_ms_ = 0;
  long history_lines_ = -1;  // lines in the history file; -1 until counted once
};

// The error for a slot that is gone while walfold holds a checkpoint for it (a gap): names the
// checkpoint and the slot's creation, and points to `walfold reconcile --full`.
DataError slot_gone_error(const std::string& slot, const Checkpoint& c);
// The error for a slot that does not exist while a checkpoint does: MongoDB's (`mongo`) or the
// state directory's (`local`, read from `state_file`). When only the state directory has one
// and it names another PostgreSQL system than `system_id` (this server's), it is a leftover
// of another deployment, and the error says so (and how to clear it) instead of calling the
// slot gone.
DataError missing_slot_error(const std::string& slot, const std::optional<Checkpoint>& mongo,
                             const std::optional<Checkpoint>& local, const std::string& state_file,
                             const std::string& system_id);

// Commands that write the state directory (setup, run, reconcile --full/--from-lsn) call this
// first, before any server is touched. Run as root on a state directory that another user owns
// (the service's user, e.g. walfold), they would leave root-owned <slot>.checkpoint/.history
// files there that the service can no longer update: refused with PermissionError (exit 77)
// saying to run `runuser -u <owner> -- walfold <command_line>` instead. `command_line` is what
// follows "walfold" on the command line that was given.
void check_state_dir_owner(const std::string& state_dir, const std::string& command_line);

// Replaces `path` durably: writes `path`.tmp, fsyncs and closes it, renames it over `path` and
// fsyncs the directory. FileError (CannotCreate: exit 73, Io: exit 74) naming the file and errno
// on any failure, with no descriptor left open.
void write_file_durably(const std::string& path, const std::string& content);

// Unix time in ms; "2026-11-23T05:00:00.123Z" for logs and listings.
std::int64_t now_ms();
std::string format_time_ms(std::int64_t ms);

}  // namespace walfold::checkpoint
