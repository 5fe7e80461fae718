// The reader service's one rule for what ends a session: reconnect with backoff, or stop with the
// error's exit code. It is the error table's retry class, so a PostgreSQL error is judged by its
// SQLSTATE, not by which C++ type happened to carry it.
#include <gtest/gtest.h>

#include <stdexcept>

#include "common/error.h"
#include "common/pg.h"
#include "pipeline/reader_service.h"

namespace {

using namespace walfold;

TEST(ReaderService, PostgresErrorsThatPassReconnectWhateverTypeCarriesThem) {
  // A statement cancelled (statement_timeout, pg_cancel_backend), a server shutting down or
  // starting, too many connections, a serialization failure: before the table, only
  // UnavailableError reconnected and these PgErrors ended the reader with exit 69.
  for (const char* state : {"57014", "57P01", "57P03", "53300", "40001", "08006", "55P03"})
    EXPECT_TRUE(pipeline::reconnects_after(PgError("postgresql at x: failed", state))) << state;
  EXPECT_TRUE(pipeline::reconnects_after(UnavailableError("redis at x: connection refused")));
  EXPECT_TRUE(pipeline::reconnects_after(TransientError("mongodb at x: write conflict")));
}

TEST(ReaderService, PermanentErrorsStop) {
  EXPECT_FALSE(pipeline::reconnects_after(PgError("postgresql at x: permission denied", "42501")));
  EXPECT_FALSE(pipeline::reconnects_after(PgError("postgresql at x: syntax", "42601")));
  EXPECT_FALSE(pipeline::reconnects_after(DataError("a gap")));
  EXPECT_FALSE(pipeline::reconnects_after(ConfigError("bad")));
  EXPECT_FALSE(pipeline::reconnects_after(AuthError("refused")));
  EXPECT_FALSE(pipeline::reconnects_after(InternalError("invariant")));
  EXPECT_FALSE(pipeline::reconnects_after(std::runtime_error("a library's error")));
}

}  // namespace
