#include "common/lsn.h"

#include <charconv>
#include <cstdio>

namespace walfold {

std::string format_lsn(Lsn lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
                static_cast<unsigned>(lsn & 0xffffffffu));
  return buf;
}

std::optional<Lsn> parse_lsn(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto hi_s = text.substr(0, slash), lo_s = text.substr(slash + 1);
  if (hi_s.empty() || lo_s.empty() || hi_s.size() > 8 || lo_s.size() > 8) return std::nullopt;
  std::uint32_t hi = 0, lo = 0;
  auto r1 = std::from_chars(hi_s.data(), hi_s.data() + hi_s.size(), hi, 16);
  auto r2 = std::from_chars(lo_s.data(), lo_s.data() + lo_s.size(), lo, 16);
  if (r1.ec != std::errc{} || r1.ptr != hi_s.data() + hi_s.size()) return std::nullopt;
  if (r2.ec != std::errc{} || r2.ptr != lo_s.data() + lo_s.size()) return std::nullopt;
  return (static_cast<Lsn>(hi) << 32) | lo;
}

std::string lsn_key(Lsn lsn) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(lsn));
  return buf;
}

std::optional<Lsn> parse_lsn_key(std::string_view hex) {
  if (hex.size() != 16) return std::nullopt;
  Lsn v = 0;
  for (char c : hex) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<Lsn>(d);
  }
  return v;
}

}  // namespace walfold
