// Exact decimal arithmetic for money. PostgreSQL numeric text in, Decimal128-compatible text
// out; never a double. Values are mantissa * 10^-scale with |mantissa| < 10^34 (Decimal128's
// 34 significant digits), so anything this class holds converts to Decimal128 exactly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace walfold {

class Decimal {
 public:
  Decimal() = default;
  // "-123.4500", "0", "7." are accepted; NaN, Infinity, exponents, blanks and more than 34
  // significant digits are not (nullopt): the caller names the column and LSN in its error.
  static std::optional<Decimal> parse(std::string_view text);

  // nullopt on overflow past 34 digits.
  std::optional<Decimal> plus(const Decimal& other) const;
  Decimal negated() const;
  bool is_zero() const { return mantissa_ == 0; }
  int sign() const { return mantissa_ < 0 ? -1 : (mantissa_ > 0 ? 1 : 0); }
  int scale() const { return scale_; }
  // -1, 0 or 1, exactly (any scales).
  int compare(const Decimal& other) const;

  // Keeps the scale: "100.5000". This is what goes into Decimal128.
  std::string to_string() const;
  // Trailing fractional zeros removed, "-0" is "0": "100.5". Equal values print equally.
  std::string canonical() const;

  // Canonical form of any decimal text (PostgreSQL numeric or Decimal128 output such as
  // "1.00E+3"); nullopt if it is not a finite number.
  static std::optional<std::string> canonicalize(std::string_view text);

 private:
  __int128 mantissa_ = 0;
  int scale_ = 0;
};

}  // namespace walfold
