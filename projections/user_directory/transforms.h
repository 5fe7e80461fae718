// The privacy transforms of the user directory (config/README.md, `user_directory.columns`):
// what each configured column becomes in the MongoDB document. Pure functions of the salt and
// the row: the same row gives the same document in every worker, in every replay and in the
// snapshot.
#pragma once

#include <string>
#include <string_view>

namespace walfold::projections::user_directory {

enum class Transform {
  Keep,       // the value as PostgreSQL sent it
  Drop,       // not carried in jobs, never in the document
  Hash,       // HMAC-SHA256 keyed with the salt, lower-case hex (64 characters)
  Pseudonym,  // "Usuario_<n>", n derived from the user's id (see pseudonym())
};
// "keep", "drop", "hash", "pseudonym"; nullptr for anything else.
const char* transform_name(Transform t);
bool parse_transform(std::string_view text, Transform& out);

// HMAC-SHA256(key, message) in lower-case hex (OpenSSL's libcrypto; RFC 2104/4231).
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

// "Usuario_<n>" for the user whose id (the row's column 0) is `user_id`: n is the first 8 bytes,
// big-endian, of HMAC-SHA256(k, user_id) as a decimal number, where
// k = HMAC-SHA256(salt, "walfold user_directory pseudonym"). Stable per user (an email or name
// change keeps it), unlinkable to the hashed columns without the salt (a different key, and
// the id rather than the email), and colliding with odds of about u^2 / 2^65 for u users.
std::string pseudonym(std::string_view salt, std::string_view user_id);

}  // namespace walfold::projections::user_directory
