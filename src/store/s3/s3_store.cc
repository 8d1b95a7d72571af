// The S3 store: objects under s3://bucket/prefix, signed with SigV4, over libcurl. Works with AWS
// S3, GCS (interoperability API with HMAC keys) and MinIO. Put is a single PUT, so a reader sees
// the old object or the new one, never a part.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "core/crypto.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "http/client.h"
#include "http/message.h"
#include "store/blob_store.h"
#include "store/s3/sigv4.h"

namespace kiln::store {
namespace {

struct S3Config {
  std::string bucket;
  std::string prefix;  // without a trailing '/'; may be empty
  std::string scheme = "https";
  std::string host;  // endpoint host[:port]
  bool path_style = false;
  std::string region = "us-east-1";
  int page_size = 1000;  // ListObjectsV2 max-keys
  int attempts = 4;
  AwsCredentials credentials;
};

std::string XmlUnescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    const size_t end = s.find(';', i);
    if (end == std::string_view::npos) {
      out += s.substr(i);
      break;
    }
    const std::string_view entity = s.substr(i + 1, end - i - 1);
    if (entity == "amp")
      out += '&';
    else if (entity == "lt")
      out += '<';
    else if (entity == "gt")
      out += '>';
    else if (entity == "quot")
      out += '"';
    else if (entity == "apos")
      out += '\'';
    else if (!entity.empty() && entity[0] == '#') {
      const bool hex = entity.size() > 1 && entity[1] == 'x';
      const long code =
          std::strtol(std::string(entity.substr(hex ? 2 : 1)).c_str(), nullptr, hex ? 16 : 10);
      if (code > 0 && code < 128) out += static_cast<char>(code);
    } else {
      out += StrCat("&", entity, ";");
    }
    i = end;
  }
  return out;
}

// The text of every <tag>...</tag> in `xml`, in order.
std::vector<std::string> XmlValues(std::string_view xml, std::string_view tag) {
  std::vector<std::string> out;
  const std::string open = StrCat("<", tag, ">"), close = StrCat("</", tag, ">");
  size_t at = 0;
  while ((at = xml.find(open, at)) != std::string_view::npos) {
    const size_t start = at + open.size();
    const size_t end = xml.find(close, start);
    if (end == std::string_view::npos) break;
    out.push_back(XmlUnescape(xml.substr(start, end - start)));
    at = end + close.size();
  }
  return out;
}

std::string ContentTypeOf(std::string_view key) {
  if (key.ends_with(".png")) return "image/png";
  if (key.ends_with(".json")) return "application/json";
  return "application/octet-stream";
}

class S3Store final : public BlobStore {
 public:
  explicit S3Store(S3Config config) : c_(std::move(config)) {}

  absl::Status Put(std::string_view key, std::string_view bytes) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    KILN_ASSIGN_OR_RETURN(http::ClientResponse r,
                          Call("PUT", ObjectName(key), {}, std::string(bytes),
                               {{"Content-Type", ContentTypeOf(key)}}));
    if (r.status == 200) return absl::OkStatus();
    return Failure("PUT", key, r);
  }

  absl::StatusOr<std::string> Get(std::string_view key) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    KILN_ASSIGN_OR_RETURN(http::ClientResponse r, Call("GET", ObjectName(key), {}, "", {}));
    if (r.status == 200) return std::move(r.body);
    if (r.status == 404) return absl::NotFoundError(StrCat("no object ", key));
    return Failure("GET", key, r);
  }

  absl::StatusOr<Versioned> GetVersioned(std::string_view key) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    KILN_ASSIGN_OR_RETURN(http::ClientResponse r, Call("GET", ObjectName(key), {}, "", {}));
    if (r.status == 404) return absl::NotFoundError(StrCat("no object ", key));
    if (r.status != 200) return Failure("GET", key, r);
    std::string etag = r.Header("etag");
    if (etag.empty()) {
      return absl::InternalError(StrCat("S3 GET ", key, ": the answer has no ETag"));
    }
    return Versioned{std::move(r.body), std::move(etag)};
  }

  // S3's conditional PUT: If-Match on the ETag read, or If-None-Match: * to create. A PUT
  // whose answer was lost and was sent again finds its own bytes there (412): the stored
  // object is read back, and when it is these bytes, the write was this one.
  absl::StatusOr<std::string> PutIf(std::string_view key, std::string_view bytes,
                                    std::string_view version) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Content-Type", ContentTypeOf(key)}};
    if (version.empty()) {
      headers.emplace_back("If-None-Match", "*");
    } else {
      headers.emplace_back("If-Match", std::string(version));
    }
    int attempts = 0;
    KILN_ASSIGN_OR_RETURN(http::ClientResponse r,
                          Call("PUT", ObjectName(key), {}, std::string(bytes), headers, &attempts));
    if (r.status == 200) {
      std::string etag = r.Header("etag");
      if (!etag.empty()) return etag;
      KILN_ASSIGN_OR_RETURN(Versioned stored, GetVersioned(key));
      return stored.version;
    }
    // 412: the precondition failed; 409: another conditional write to the key was in flight;
    // 404 NoSuchKey: the object to match is gone (NoSuchBucket is a failure of the store).
    const std::vector<std::string> code = XmlValues(r.body, "Code");
    const bool gone =
        r.status == 404 && !version.empty() && !code.empty() && code[0] == "NoSuchKey";
    if (r.status != 412 && r.status != 409 && !gone) return Failure("PUT", key, r);
    if (attempts > 1 && r.status != 404) {
      // This PUT was sent more than once: the earlier copy may be what is there (412), or be
      // landing now (409). Only the stored bytes tell; when they cannot be read, the outcome
      // is unknown, which is not the same as another writer's.
      if (r.status == 409) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      auto stored = GetVersioned(key);
      if (!stored.ok() && !absl::IsNotFound(stored.status())) {
        return absl::UnavailableError(StrCat("S3 conditional PUT ", key,
                                             ": its outcome is unknown (",
                                             stored.status().message(), ")"));
      }
      if (stored.ok() && stored->bytes == bytes) return stored->version;
    }
    return ChangedByAnotherWriter(key);
  }

  absl::StatusOr<bool> Exists(std::string_view key) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    KILN_ASSIGN_OR_RETURN(http::ClientResponse r, Call("HEAD", ObjectName(key), {}, "", {}));
    if (r.status == 200) return true;
    if (r.status == 404) return false;
    return Failure("HEAD", key, r);
  }

  absl::Status Delete(std::string_view key) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    KILN_ASSIGN_OR_RETURN(http::ClientResponse r, Call("DELETE", ObjectName(key), {}, "", {}));
    if (r.status == 204 || r.status == 200 || r.status == 404) return absl::OkStatus();
    return Failure("DELETE", key, r);
  }

  absl::StatusOr<std::vector<std::string>> List(std::string_view prefix, size_t limit) override {
    std::vector<std::string> out;
    std::string token;
    const std::string full_prefix = ObjectName(prefix);
    while (out.size() < limit) {
      std::map<std::string, std::string> query = {
          {"list-type", "2"},
          {"prefix", full_prefix},
          {"max-keys", std::to_string(std::min<size_t>(c_.page_size, limit - out.size()))}};
      if (!token.empty()) query["continuation-token"] = token;
      KILN_ASSIGN_OR_RETURN(http::ClientResponse r, Call("GET", "", query, "", {}));
      if (r.status != 200) return Failure("LIST", prefix, r);
      for (std::string& name : XmlValues(r.body, "Key")) {
        if (name.size() < full_prefix.size()) continue;
        std::string key = c_.prefix.empty() ? name : name.substr(c_.prefix.size() + 1);
        out.push_back(std::move(key));
      }
      const std::vector<std::string> truncated = XmlValues(r.body, "IsTruncated");
      const std::vector<std::string> next = XmlValues(r.body, "NextContinuationToken");
      if (truncated.empty() || truncated[0] != "true" || next.empty()) break;
      token = next[0];
    }
    std::sort(out.begin(), out.end());
    if (out.size() > limit) out.resize(limit);
    return out;
  }

  absl::Status Check() override { return List("", 1).status(); }

  std::string Describe() const override {
    return StrCat("s3://", c_.bucket, c_.prefix.empty() ? "" : "/", c_.prefix, " at ", c_.scheme,
                  "://", c_.host, c_.path_style ? " (path-style)" : "");
  }

 private:
  std::string ObjectName(std::string_view key) const {
    return c_.prefix.empty() ? std::string(key) : StrCat(c_.prefix, "/", key);
  }

  // One signed request, retried with backoff on transport errors, 5xx and 429.
  absl::StatusOr<http::ClientResponse> Call(
      const std::string& method, const std::string& object,
      const std::map<std::string, std::string>& query, const std::string& body,
      const std::vector<std::pair<std::string, std::string>>& extra_headers,
      int* attempts_made = nullptr) {
    const std::string host = c_.path_style ? c_.host : StrCat(c_.bucket, ".", c_.host);
    std::string path = c_.path_style ? StrCat("/", c_.bucket, "/", object) : StrCat("/", object);
    if (object.empty()) path = c_.path_style ? StrCat("/", c_.bucket) : "/";
    const std::string canonical_uri = UriEncode(path, /*keep_slash=*/true);
    std::string url = StrCat(c_.scheme, "://", host, canonical_uri);
    std::string q;
    for (const auto& [k, v] : query) {
      q += q.empty() ? "?" : "&";
      q += UriEncode(k, false) + "=" + UriEncode(v, false);
    }
    url += q;
    absl::StatusOr<http::ClientResponse> last;
    for (int attempt = 0; attempt < c_.attempts; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
      SigningInput in;
      in.method = method;
      in.canonical_uri = canonical_uri;
      in.query = query;
      in.payload_sha256 = Sha256Hex(body);
      in.amz_date = AmzDate(std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
      in.region = c_.region;
      in.headers = {
          {"host", host}, {"x-amz-content-sha256", in.payload_sha256}, {"x-amz-date", in.amz_date}};
      if (!c_.credentials.session_token.empty()) {
        in.headers["x-amz-security-token"] = c_.credentials.session_token;
      }
      http::ClientRequest req;
      req.method = method;
      req.url = url;
      req.body = body;
      req.timeout = std::chrono::seconds(60);
      req.max_body_bytes = size_t{1} << 30;
      for (const auto& [k, v] : in.headers) {
        if (k != "host") req.headers.emplace_back(k, v);
      }
      req.headers.emplace_back("Authorization", SignV4(in, c_.credentials));
      for (const auto& h : extra_headers) req.headers.push_back(h);
      last = http::Fetch(req);
      if (attempts_made) *attempts_made = attempt + 1;
      if (last.ok() && last->status < 500 && last->status != 429) return last;
    }
    if (!last.ok()) {
      return absl::UnavailableError(
          StrCat("the S3 store at ", c_.host, " cannot be reached: ", last.status().message()));
    }
    return last;
  }

  absl::Status Failure(std::string_view op, std::string_view key,
                       const http::ClientResponse& r) const {
    const std::vector<std::string> code = XmlValues(r.body, "Code");
    const std::vector<std::string> message = XmlValues(r.body, "Message");
    const std::string what = StrCat("S3 ", op, " ", key, " in bucket ", c_.bucket, ": HTTP ",
                                    r.status, code.empty() ? "" : StrCat(" ", code[0]),
                                    message.empty() ? "" : StrCat(": ", message[0]));
    if (r.status == 403 || r.status == 401) return absl::PermissionDeniedError(what);
    if (r.status == 404) return absl::NotFoundError(what);  // NoSuchBucket
    if (r.status >= 500 || r.status == 429) return absl::UnavailableError(what);
    return absl::InternalError(what);
  }

  const S3Config c_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlobStore>> OpenS3Store(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return InvalidField("store", StrCat("'", url, "': ", why));
  };
  std::string_view rest = url.substr(5);  // after "s3://"
  std::string_view query;
  if (const size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  S3Config c;
  const size_t slash = rest.find('/');
  c.bucket = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) c.prefix = std::string(rest.substr(slash + 1));
  while (!c.prefix.empty() && c.prefix.back() == '/') c.prefix.pop_back();
  if (c.bucket.empty() || c.bucket.size() > 63 ||
      c.bucket.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string::npos) {
    return bad("the bucket name must be 1..63 of a-z 0-9 . -");
  }
  if (!c.prefix.empty()) KILN_RETURN_IF_ERROR(Annotate(CheckKey(c.prefix), "the store prefix"));
  if (const char* r = std::getenv("AWS_REGION"); r && *r) {
    c.region = r;
  } else if (const char* d = std::getenv("AWS_DEFAULT_REGION"); d && *d) {
    c.region = d;
  }
  std::string endpoint;
  std::string addressing;
  for (std::string_view pair : Split(query, "&", /*skip_empty=*/true)) {
    const size_t eq = pair.find('=');
    const std::string name(pair.substr(0, eq));
    auto value = http::PercentDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!value) return bad(StrCat("malformed value of '", name, "'"));
    if (name == "endpoint") {
      endpoint = *value;
    } else if (name == "region") {
      c.region = *value;
    } else if (name == "addressing") {
      addressing = *value;
    } else if (name == "page_size") {
      c.page_size = std::atoi(value->c_str());
      if (c.page_size < 1 || c.page_size > 1000) return bad("page_size must be 1..1000");
    } else {
      return bad(StrCat("unknown parameter '", name, "' (endpoint, region, addressing)"));
    }
  }
  if (endpoint.empty()) {
    c.host = StrCat("s3.", c.region, ".amazonaws.com");
    c.path_style = false;
  } else {
    const size_t scheme_end = endpoint.find("://");
    if (scheme_end == std::string::npos) return bad("endpoint must be an http(s):// URL");
    c.scheme = endpoint.substr(0, scheme_end);
    if (c.scheme != "http" && c.scheme != "https") return bad("endpoint must be http or https");
    c.host = endpoint.substr(scheme_end + 3);
    while (!c.host.empty() && c.host.back() == '/') c.host.pop_back();
    if (c.host.empty() || c.host.find('/') != std::string::npos) {
      return bad("endpoint must be scheme://host[:port] without a path");
    }
    c.path_style = true;  // MinIO, moto and most self-hosted stores
  }
  if (addressing == "path") {
    c.path_style = true;
  } else if (addressing == "virtual") {
    c.path_style = false;
  } else if (!addressing.empty()) {
    return bad("addressing must be path or virtual");
  }
  const char* id = std::getenv("AWS_ACCESS_KEY_ID");
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
  if (!id || !*id || !secret || !*secret) {
    return WithField(absl::FailedPreconditionError(
                         "the S3 store needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the "
                         "environment (credentials never go in the URL)"),
                     "store");
  }
  c.credentials.access_key_id = id;
  c.credentials.secret_access_key = secret;
  if (const char* t = std::getenv("AWS_SESSION_TOKEN"); t && *t) c.credentials.session_token = t;
  return std::unique_ptr<BlobStore>(new S3Store(std::move(c)));
}

}  // namespace kiln::store
