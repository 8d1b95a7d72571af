// Helpers shared by the handlers: body checks, tenant, base URL, query checks.
#include <chrono>

#include "api/errors.h"
#include "api/handlers.h"
#include "core/crypto.h"
#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::api {

absl::StatusOr<std::vector<http::FormPart>> FormParts(const http::Request& req) {
  auto boundary = http::MultipartBoundary(req.Header("content-type").value_or(""));
  if (!boundary.ok()) return WithField(boundary.status(), "content-type");
  return http::ParseMultipart(req.body, *boundary);
}

absl::Status CheckBody(const http::Request& req,
                       std::initializer_list<std::string_view> media_types, size_t limit) {
  const std::string media = req.MediaType();
  bool known = false;
  for (std::string_view m : media_types) known |= media == m;
  if (!known) {
    std::vector<std::string> names(media_types.begin(), media_types.end());
    return WithHttpStatus(WithField(absl::InvalidArgumentError(StrCat(
                                        "Content-Type must be ", Join(names, " or "), ", not '",
                                        req.Header("content-type").value_or(""), "'")),
                                    "content-type"),
                          415);
  }
  if (req.body.size() > limit) {
    return WithHttpStatus(absl::InvalidArgumentError(StrCat("request body is ", req.body.size(),
                                                            " bytes; the limit is ", limit)),
                          413);
  }
  return absl::OkStatus();
}

absl::StatusOr<Caller> Authenticate(const ApiContext& ctx, const http::Request& req) {
  static const ApiKeys kNoKeys;
  return (ctx.keys ? *ctx.keys : kNoKeys).Authenticate(req);
}

http::Response Unauthorized(const absl::Status& status) {
  http::Response denied = ErrorResponse(status);
  denied.headers.emplace_back("WWW-Authenticate", "Bearer");
  return denied;
}

Caller CallerOf(const ApiContext& ctx, const http::Request& req) {
  auto caller = Authenticate(ctx, req);
  // The routes authenticate before any handler runs; a key removed by a reload in between
  // leaves the request with no tenant's rights: "(none)" is no tenant's name (names are
  // letters, digits, '.', '_' and '-'), so it owns nothing and filters everything out.
  return caller.ok() ? *caller : Caller{"(none)", false, ""};
}

std::string TenantOf(const ApiContext& ctx, const http::Request& req) {
  return CallerOf(ctx, req).tenant;
}

namespace {
std::string OwnerFolder(const std::string& tenant) {
  return "t-" + Sha256Hex(tenant).substr(0, 16);
}
}  // namespace

std::string SyncImageKey(const ApiContext& ctx, const std::string& tenant, const std::string& id,
                         size_t index) {
  if (ctx.keys && ctx.keys->enabled()) {
    return StrCat("images/", OwnerFolder(tenant), "/", id, "/", index, ".png");
  }
  return StrCat("images/", id, "/", index, ".png");
}

bool MayReadImage(const Caller& caller, std::string_view key) {
  return caller.admin || key.starts_with(StrCat("images/", OwnerFolder(caller.tenant), "/"));
}

http::Handler Guarded(const ApiContext& ctx, Access access, http::Handler handler) {
  if (access == Access::kPublic) return handler;
  return [c = &ctx, access, handler = std::move(handler)](const http::Request& r,
                                                          const http::PathParams& p) {
    if (access == Access::kOperator && http::IsLoopbackHost(r.remote)) return handler(r, p);
    auto caller = Authenticate(*c, r);
    if (!caller.ok()) return Unauthorized(caller.status());
    if ((access == Access::kAdmin || access == Access::kOperator) && !caller->admin) {
      return ErrorResponse(absl::PermissionDeniedError("this route needs an admin key"));
    }
    if (c->keys) {
      // Steady time: a wall-clock step must not refill or drain a bucket.
      const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count();
      const RateDecision d = c->keys->Admit(*caller, now_ms);
      if (!d.allowed) {
        return ErrorResponse(WithRateLimit(
            WithRetryAfter(absl::ResourceExhaustedError(
                               StrCat("this API key's requests_per_minute (", d.limit,
                                      ") is used up; retry in ", d.retry_after_seconds, " s")),
                           d.retry_after_seconds),
            {d.limit, 0}));
      }
    }
    return handler(r, p);
  };
}

absl::StatusOr<quota::QuotaTicket> AdmitWork(const ApiContext& ctx, const http::Request& req,
                                             int jobs, int64_t images, double cost_seconds) {
  if (!ctx.keys || !ctx.keys->enabled() || !ctx.quotas) return quota::QuotaTicket();
  const Caller caller = CallerOf(ctx, req);
  quota::Demand demand;
  demand.key = caller.key;
  demand.tenant = caller.tenant;
  demand.jobs = jobs;
  demand.images = images;
  demand.cost_seconds = cost_seconds;
  return ctx.quotas->Admit(ctx.keys->LimitsOf(caller), demand);
}

std::string BaseUrl(const http::Request& req) {
  std::string host(req.Header("host").value_or(""));
  for (char c : host) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == ':' ||
                    c == '-' || c == '[' || c == ']' || c == '_';
    if (!ok) return "";
  }
  if (host.empty() || host.size() > 255) return "";
  return "http://" + host;
}

absl::Status CheckQuery(const http::Request& req, std::initializer_list<std::string_view> allowed) {
  for (const auto& [name, value] : req.query) {
    bool ok = false;
    for (std::string_view a : allowed) ok |= name == a;
    if (!ok) return InvalidField(name, StrCat("unknown query parameter '", name, "'"));
  }
  return absl::OkStatus();
}

}  // namespace kiln::api
