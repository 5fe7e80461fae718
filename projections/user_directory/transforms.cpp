#include "projections/user_directory/transforms.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstdint>

#include "common/error.h"

namespace walfold::projections::user_directory {
namespace {

using Digest = std::array<unsigned char, 32>;

// One-shot HMAC(): no context object to own, nothing to free.
Digest hmac_sha256(std::string_view key, std::string_view message) {
  Digest out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), out.data(),
           &len) == nullptr ||
      len != out.size())
    throw InternalError("HMAC-SHA256 failed in libcrypto");
  return out;
}

}  // namespace

const char* transform_name(Transform t) {
  switch (t) {
    case Transform::Keep:
      return "keep";
    case Transform::Drop:
      return "drop";
    case Transform::Hash:
      return "hash";
    case Transform::Pseudonym:
      return "pseudonym";
  }
  return nullptr;
}

bool parse_transform(std::string_view text, Transform& out) {
  for (Transform t : {Transform::Keep, Transform::Drop, Transform::Hash, Transform::Pseudonym})
    if (text == transform_name(t)) {
      out = t;
      return true;
    }
  return false;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  static const char* kHex = "0123456789abcdef";
  const Digest d = hmac_sha256(key, message);
  std::string out;
  out.reserve(d.size() * 2);
  for (unsigned char b : d) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

std::string pseudonym(std::string_view salt, std::string_view user_id) {
  const Digest k = hmac_sha256(salt, "walfold user_directory pseudonym");
  const Digest d =
      hmac_sha256(std::string_view(reinterpret_cast<const char*>(k.data()), k.size()), user_id);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n = (n << 8) | d[static_cast<std::size_t>(i)];
  return "Usuario_" + std::to_string(n);
}

}  // namespace walfold::projections::user_directory
