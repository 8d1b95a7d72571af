#include "api/api_keys.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <sstream>

#include "core/crypto.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "yaml-cpp/yaml.h"

namespace kiln::api {
namespace {

bool IsTenantName(std::string_view t) {
  if (t.empty() || t.size() > 64) return false;
  for (char c : t) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool IsSha256Hex(std::string_view h) {
  if (h.size() != 64) return false;
  for (char c : h) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string_view BearerToken(const http::Request& req) {
  auto auth = req.Header("authorization");
  if (!auth) return {};
  std::string_view v = Trim(*auth);
  if (!StartsWithIgnoreCase(v, "bearer ")) return {};
  return Trim(v.substr(7));
}

// One entry of a key's `limits`.
absl::Status ParseLimit(const std::string& what, const YAML::Node& value, const std::string& where,
                        const KeyRules& rules, quota::KeyLimits& limits) {
  auto whole = [&](int64_t max) -> absl::StatusOr<int64_t> {
    const int64_t n = value.as<int64_t>();
    if (n < 1 || n > max) {
      return absl::InvalidArgumentError(StrCat(where, ": '", what, "' must be in 1..", max));
    }
    return n;
  };
  if ((what == "concurrent_jobs" || what == "queued_seconds") && !rules.job_limits) {
    return absl::InvalidArgumentError(
        StrCat(where, ": limit '", what,
               "' cannot be enforced with a distributed queue (it does not count a tenant's "
               "jobs); use requests_per_minute and images_per_day there"));
  }
  if (what == "requests_per_minute") {
    KILN_ASSIGN_OR_RETURN(int64_t n, whole(1000000));
    limits.requests_per_minute = static_cast<int>(n);
  } else if (what == "concurrent_jobs") {
    KILN_ASSIGN_OR_RETURN(int64_t n, whole(1000000));
    limits.concurrent_jobs = static_cast<int>(n);
  } else if (what == "images_per_day") {
    KILN_ASSIGN_OR_RETURN(limits.images_per_day, whole(int64_t{1} << 40));
  } else if (what == "queued_seconds") {
    const double seconds = value.as<double>();
    if (!(seconds > 0 && seconds <= 1e9)) {
      return absl::InvalidArgumentError(StrCat(where, ": 'queued_seconds' must be in (0, 1e9]"));
    }
    limits.queued_seconds = seconds;
  } else {
    return absl::InvalidArgumentError(
        StrCat(where, ": unknown limit '", what,
               "' (requests_per_minute, concurrent_jobs, queued_seconds, images_per_day)"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string TenantOfToken(std::string_view token) {
  if (token.empty() || token == "anonymous") return "anonymous";
  // Never the key itself: it would end up in the database and in logs.
  return "key-" + Sha256Hex(token).substr(0, 16);
}

absl::StatusOr<std::vector<ApiKey>> ParseApiKeys(std::string_view yaml, std::string_view source,
                                                 KeyRules rules) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat(source, ": ", e.what()));
  }
  if (!root.IsMap() || !root["keys"] || !root["keys"].IsSequence()) {
    return absl::InvalidArgumentError(StrCat(source, ": must be a map with a list 'keys'"));
  }
  for (const auto& kv : root) {
    if (kv.first.as<std::string>() != "keys") {
      return absl::InvalidArgumentError(
          StrCat(source, ": unknown key '", kv.first.as<std::string>(), "'"));
    }
  }
  std::vector<ApiKey> keys;
  std::set<std::string> seen;
  int index = 0;
  for (const auto& entry : root["keys"]) {
    const std::string where = StrCat(source, ": keys[", index++, "]");
    if (!entry.IsMap()) return absl::InvalidArgumentError(StrCat(where, ": must be a map"));
    ApiKey key;
    try {
      for (const auto& kv : entry) {
        const std::string name = kv.first.as<std::string>();
        if (name == "key") {
          const std::string secret = kv.second.as<std::string>();
          if (secret.size() < 16 || secret.size() > 256) {
            return absl::InvalidArgumentError(StrCat(where, ": 'key' must be 16..256 characters"));
          }
          key.sha256 = Sha256Hex(secret);
        } else if (name == "key_sha256") {
          key.sha256 = ToLowerAscii(kv.second.as<std::string>());
          if (!IsSha256Hex(key.sha256)) {
            return absl::InvalidArgumentError(
                StrCat(where, ": 'key_sha256' must be 64 hex digits (sha256sum of the key)"));
          }
        } else if (name == "tenant") {
          key.tenant = kv.second.as<std::string>();
        } else if (name == "role") {
          const std::string role = kv.second.as<std::string>();
          if (role != "user" && role != "admin") {
            return absl::InvalidArgumentError(StrCat(where, ": 'role' must be user or admin"));
          }
          key.admin = role == "admin";
        } else if (name == "limits") {
          if (!kv.second.IsMap()) {
            return absl::InvalidArgumentError(StrCat(where, ": 'limits' must be a map"));
          }
          for (const auto& limit : kv.second) {
            KILN_RETURN_IF_ERROR(
                ParseLimit(limit.first.as<std::string>(), limit.second, where, rules, key.limits));
          }
        } else {
          return absl::InvalidArgumentError(StrCat(where, ": unknown key '", name, "'"));
        }
      }
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(StrCat(where, ": ", e.what()));
    }
    if (key.sha256.empty()) {
      return absl::InvalidArgumentError(StrCat(where, ": needs 'key' or 'key_sha256'"));
    }
    if (!IsTenantName(key.tenant)) {
      return absl::InvalidArgumentError(
          StrCat(where, ": 'tenant' must be 1..64 letters, digits, '.', '_' or '-'"));
    }
    if (!seen.insert(key.sha256).second) {
      return absl::InvalidArgumentError(StrCat(where, ": the same key is listed twice"));
    }
    keys.push_back(std::move(key));
  }
  return keys;
}

absl::StatusOr<std::unique_ptr<ApiKeys>> ApiKeys::Load(const std::string& path, KeyRules rules) {
  auto keys = std::make_unique<ApiKeys>();
  keys->rules_ = rules;
  if (!path.empty()) {
    keys->path_ = path;
    keys->enabled_ = true;
    KILN_RETURN_IF_ERROR(keys->Reload());
    return keys;
  }
  if (const char* env = std::getenv("KILN_API_KEYS"); env && *env) {
    KILN_ASSIGN_OR_RETURN(std::vector<ApiKey> parsed, ParseApiKeys(env, "$KILN_API_KEYS", rules));
    keys->enabled_ = true;
    keys->Set(std::move(parsed));
  }
  return keys;
}

absl::Status ApiKeys::Reload() {
  if (path_.empty()) return absl::OkStatus();
  std::ifstream in(path_);
  if (!in) return absl::NotFoundError(StrCat(path_, ": cannot be read"));
  std::ostringstream text;
  text << in.rdbuf();
  KILN_ASSIGN_OR_RETURN(std::vector<ApiKey> parsed, ParseApiKeys(text.str(), path_, rules_));
  Set(std::move(parsed));
  return absl::OkStatus();
}

void ApiKeys::Set(std::vector<ApiKey> keys) {
  std::unordered_map<std::string, ApiKey> by_hash;
  for (ApiKey& k : keys) {
    std::string hash = k.sha256;
    by_hash.emplace(std::move(hash), std::move(k));
  }
  absl::MutexLock lock(&mu_);
  by_hash_ = std::move(by_hash);
  // A reloaded key keeps what it has used; a removed one's bucket goes.
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    it = by_hash_.contains(it->first) ? std::next(it) : buckets_.erase(it);
  }
}

RateDecision ApiKeys::Admit(const Caller& caller, int64_t now_ms) const {
  if (!enabled_ || caller.key.empty()) return {};
  absl::MutexLock lock(&mu_);
  auto key = by_hash_.find(caller.key);
  if (key == by_hash_.end() || key->second.limits.requests_per_minute == 0) return {};
  const double rate = key->second.limits.requests_per_minute;  // per minute; also the bucket's size
  auto found = buckets_.find(caller.key);
  if (found == buckets_.end()) found = buckets_.emplace(caller.key, Bucket{rate, now_ms}).first;
  Bucket& b = found->second;
  if (now_ms > b.last_ms) {
    b.tokens = std::min(rate, b.tokens + (now_ms - b.last_ms) * rate / 60000.0);
    b.last_ms = now_ms;
  }
  RateDecision d;
  d.limit = key->second.limits.requests_per_minute;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return d;
  }
  d.allowed = false;
  d.retry_after_seconds = std::max(1, static_cast<int>(std::ceil((1.0 - b.tokens) * 60.0 / rate)));
  return d;
}

quota::KeyLimits ApiKeys::LimitsOf(const Caller& caller) const {
  if (!enabled_ || caller.key.empty()) return {};
  absl::MutexLock lock(&mu_);
  auto key = by_hash_.find(caller.key);
  return key == by_hash_.end() ? quota::KeyLimits{} : key->second.limits;
}

size_t ApiKeys::size() const {
  absl::MutexLock lock(&mu_);
  return by_hash_.size();
}

absl::StatusOr<Caller> ApiKeys::Authenticate(const http::Request& request) const {
  const std::string_view token = BearerToken(request);
  if (!enabled_) return Caller{TenantOfToken(token), /*admin=*/true, ""};
  if (token.empty()) {
    return absl::UnauthenticatedError(
        "this server needs an API key: send 'Authorization: Bearer <key>'");
  }
  // Looked up by hash: the key itself is never compared byte by byte, or kept.
  const std::string hash = Sha256Hex(token);
  absl::MutexLock lock(&mu_);
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return absl::UnauthenticatedError("the API key is not valid");
  return Caller{it->second.tenant, it->second.admin, hash};
}

}  // namespace kiln::api
