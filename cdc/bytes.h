// Byte-level helpers shared by the pgoutput decoder and the CopyData framing (cdc-internal).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>

namespace walfold::cdc::bytes {

// "'I' (0x49)" for printable bytes, "0x05" otherwise.
inline std::string describe_byte(std::uint8_t b) {
  char buf[16];
  if (b >= 0x20 && b < 0x7f) {
    std::snprintf(buf, sizeof buf, "'%c' (0x%02x)", static_cast<char>(b), b);
  } else {
    std::snprintf(buf, sizeof buf, "0x%02x", b);
  }
  return buf;
}

// Big-endian (network order) integer at p; the caller has checked the length.
template <typename T>
T load_be(const std::uint8_t* p) {
  using U = std::make_unsigned_t<T>;
  U v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v = static_cast<U>((v << 8) | p[i]);
  return static_cast<T>(v);  // modular conversion (well-defined since C++20)
}

}  // namespace walfold::cdc::bytes
