// AWS Signature Version 4 for S3-compatible stores (AWS S3, GCS's interoperability API, MinIO).
// Pure functions; thread-safe.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace kiln::store {

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // optional (temporary credentials)
};

struct SigningInput {
  std::string method;
  std::string canonical_uri;                   // already URI-encoded ("/bucket/jobs/x.png")
  std::map<std::string, std::string> query;    // decoded names and values
  std::map<std::string, std::string> headers;  // lower-case names; must include "host"
  std::string payload_sha256;                  // hex; "UNSIGNED-PAYLOAD" is allowed
  std::string amz_date;                        // "20150830T123600Z"
  std::string region;
  std::string service = "s3";
};

// The Authorization header value for `input`, signing every header in `input.headers`.
std::string SignV4(const SigningInput& input, const AwsCredentials& credentials);

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters stay, '/' stays when
// `keep_slash`, everything else becomes %XX (upper-case hex).
std::string UriEncode(std::string_view s, bool keep_slash);

// "YYYYMMDDTHHMMSSZ" for a Unix time.
std::string AmzDate(int64_t unix_seconds);

}  // namespace kiln::store
