#include "store/s3/sigv4.h"

#include <ctime>

#include "core/crypto.h"
#include "core/strings.h"

namespace kiln::store {

std::string UriEncode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved || (keep_slash && c == '/')) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

std::string AmzDate(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[17];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string SignV4(const SigningInput& in, const AwsCredentials& creds) {
  std::string query;
  for (const auto& [k, v] : in.query) {  // std::map: sorted by name
    if (!query.empty()) query += '&';
    query += UriEncode(k, false) + "=" + UriEncode(v, false);
  }
  std::string canonical_headers, signed_headers;
  for (const auto& [k, v] : in.headers) {
    canonical_headers += StrCat(k, ":", Trim(v), "\n");
    if (!signed_headers.empty()) signed_headers += ';';
    signed_headers += k;
  }
  const std::string canonical_request =
      StrCat(in.method, "\n", in.canonical_uri, "\n", query, "\n", canonical_headers, "\n",
             signed_headers, "\n", in.payload_sha256);
  const std::string date = in.amz_date.substr(0, 8);
  const std::string scope = StrCat(date, "/", in.region, "/", in.service, "/aws4_request");
  const std::string string_to_sign =
      StrCat("AWS4-HMAC-SHA256\n", in.amz_date, "\n", scope, "\n", Sha256Hex(canonical_request));
  std::string key = HmacSha256("AWS4" + creds.secret_access_key, date);
  key = HmacSha256(key, in.region);
  key = HmacSha256(key, in.service);
  key = HmacSha256(key, "aws4_request");
  return StrCat("AWS4-HMAC-SHA256 Credential=", creds.access_key_id, "/", scope,
                ", SignedHeaders=", signed_headers,
                ", Signature=", HmacSha256Hex(key, string_to_sign));
}

}  // namespace kiln::store
