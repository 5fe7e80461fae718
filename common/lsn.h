// PostgreSQL log sequence numbers: the unit of progress everywhere in walfold.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace walfold {

using Lsn = std::uint64_t;
inline constexpr Lsn kInvalidLsn = 0;

// "16/B374D848" (PostgreSQL's own notation).
std::string format_lsn(Lsn lsn);
// Accepts "X/Y" with 1-8 hex digits on each side; nullopt on anything else.
std::optional<Lsn> parse_lsn(std::string_view text);
// 16 fixed-width lowercase hex digits: sorts lexicographically in LSN order (Redis keys).
std::string lsn_key(Lsn lsn);
// The inverse of lsn_key: exactly 16 lowercase hex digits, nullopt on anything else.
std::optional<Lsn> parse_lsn_key(std::string_view hex);

}  // namespace walfold
