#include "common/decimal.h"

#include <algorithm>

namespace walfold {
namespace {

constexpr int kMaxDigits = 34;

__int128 pow10(int n) {
  __int128 r = 1;
  for (int i = 0; i < n; ++i) r *= 10;
  return r;
}

const __int128 kLimit = pow10(kMaxDigits);  // |mantissa| must stay below 10^34

}  // namespace

std::optional<Decimal> Decimal::parse(std::string_view text) {
  std::size_t i = 0;
  bool negative = false;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) negative = text[i++] == '-';
  __int128 mantissa = 0;
  int scale = 0, digits = 0;
  bool seen_digit = false, seen_point = false;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c == '.') {
      if (seen_point) return std::nullopt;
      seen_point = true;
      continue;
    }
    if (c < '0' || c > '9') return std::nullopt;
    seen_digit = true;
    if (mantissa == 0 && c == '0' && !seen_point) continue;  // leading zeros
    if (mantissa != 0 || c != '0') ++digits;
    if (digits > kMaxDigits) return std::nullopt;
    mantissa = mantissa * 10 + (c - '0');
    if (seen_point) ++scale;
  }
  if (!seen_digit) return std::nullopt;
  // Zeros after the point count toward the scale but not the digits; keep the scale sane.
  if (scale > 6143) return std::nullopt;
  if (mantissa >= kLimit) return std::nullopt;
  Decimal d;
  d.mantissa_ = negative ? -mantissa : mantissa;
  d.scale_ = scale;
  return d;
}

int Decimal::compare(const Decimal& other) const {
  if (sign() != other.sign()) return sign() < other.sign() ? -1 : 1;
  // Same sign: bring the one with fewer fractional digits to the other's scale. Once it reaches
  // 10^34 in magnitude it is larger in magnitude than the other (whose mantissa is below 10^34).
  const bool this_low = scale_ < other.scale_;
  __int128 lo = this_low ? mantissa_ : other.mantissa_;
  const __int128 hi = this_low ? other.mantissa_ : mantissa_;
  for (int i = std::min(scale_, other.scale_); i < std::max(scale_, other.scale_); ++i) {
    lo *= 10;
    if (lo >= kLimit || lo <= -kLimit) {
      int low_vs_high = lo > 0 ? 1 : -1;  // |lo| larger: lo is further from zero
      return this_low ? low_vs_high : -low_vs_high;
    }
  }
  int low_vs_high = lo < hi ? -1 : (lo > hi ? 1 : 0);
  return this_low ? low_vs_high : -low_vs_high;
}

std::optional<Decimal> Decimal::plus(const Decimal& other) const {
  int scale = std::max(scale_, other.scale_);
  auto rescale = [&](const Decimal& d) -> std::optional<__int128> {
    __int128 m = d.mantissa_;
    for (int i = d.scale_; i < scale; ++i) {
      m *= 10;
      if (m >= kLimit || m <= -kLimit) return std::nullopt;
    }
    return m;
  };
  auto a = rescale(*this), b = rescale(other);
  if (!a || !b) return std::nullopt;
  __int128 sum = *a + *b;
  if (sum >= kLimit || sum <= -kLimit) return std::nullopt;
  Decimal r;
  r.mantissa_ = sum;
  r.scale_ = scale;
  return r;
}

Decimal Decimal::negated() const {
  Decimal r = *this;
  r.mantissa_ = -mantissa_;
  return r;
}

std::string Decimal::to_string() const {
  __int128 m = mantissa_ < 0 ? -mantissa_ : mantissa_;
  std::string digits;
  do {
    digits.push_back(static_cast<char>('0' + static_cast<int>(m % 10)));
    m /= 10;
  } while (m != 0);
  while (static_cast<int>(digits.size()) <= scale_) digits.push_back('0');
  std::reverse(digits.begin(), digits.end());
  if (scale_ > 0) digits.insert(digits.size() - scale_, 1, '.');
  if (mantissa_ < 0) digits.insert(0, 1, '-');
  return digits;
}

std::string Decimal::canonical() const {
  if (mantissa_ == 0) return "0";
  std::string s = to_string();
  if (scale_ > 0) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s;
}

std::optional<std::string> Decimal::canonicalize(std::string_view text) {
  // Split an optional exponent ("1.5E+3", as Decimal128's to_string prints), then shift.
  std::string_view base = text;
  long exponent = 0;
  auto e = text.find_first_of("eE");
  if (e != std::string_view::npos) {
    base = text.substr(0, e);
    auto exp_text = text.substr(e + 1);
    if (exp_text.empty()) return std::nullopt;
    bool neg = false;
    std::size_t i = 0;
    if (exp_text[0] == '+' || exp_text[0] == '-') neg = exp_text[i++] == '-';
    if (i == exp_text.size()) return std::nullopt;
    for (; i < exp_text.size(); ++i) {
      if (exp_text[i] < '0' || exp_text[i] > '9') return std::nullopt;
      exponent = exponent * 10 + (exp_text[i] - '0');
      if (exponent > 10000) return std::nullopt;
    }
    if (neg) exponent = -exponent;
  }
  auto d = parse(base);
  if (!d) return std::nullopt;
  if (d->mantissa_ == 0) return std::string("0");
  // Apply the exponent to the scale; a positive exponent beyond the scale appends zeros.
  long scale = d->scale_ - exponent;
  while (scale < 0) {
    d->mantissa_ *= 10;
    if (d->mantissa_ >= kLimit || d->mantissa_ <= -kLimit) return std::nullopt;
    ++scale;
  }
  d->scale_ = static_cast<int>(scale);
  return d->canonical();
}

}  // namespace walfold
