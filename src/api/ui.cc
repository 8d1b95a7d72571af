// GET / and GET /ui/{file}: the browser UI. Files come from the binary (web/ embedded at build
// time), or from --web-dir on disk when set (for working on the page without rebuilding).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "api/errors.h"
#include "api/handlers.h"
#include "api/web_assets.h"

namespace kiln::api {
namespace {

std::string ContentTypeOf(std::string_view name) {
  auto ends = [&](std::string_view ext) { return name.ends_with(ext); };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js") || ends(".mjs")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  if (ends(".ico")) return "image/x-icon";
  if (ends(".json")) return "application/json";
  return "application/octet-stream";
}

// Asset names are flat: letters, digits, '.', '-', '_', not starting with '.'.
bool IsAssetName(std::string_view name) {
  if (name.empty() || name.size() > 128 || name.front() == '.') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::optional<std::string> ReadAsset(const std::string& web_dir, std::string_view name) {
  if (!web_dir.empty()) {
    std::ifstream in(std::filesystem::path(web_dir) / std::string(name), std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  }
  for (const WebAsset& asset : WebAssets()) {
    if (asset.name == name) return std::string(asset.data);
  }
  return std::nullopt;
}

}  // namespace

http::Response HandleUi(const ApiContext& ctx, const http::Request& req, const std::string& file) {
  if (!IsAssetName(file)) return ErrorResponse(absl::NotFoundError("no UI file " + file));
  std::optional<std::string> data = ReadAsset(ctx.web_dir, file);
  if (!data) return ErrorResponse(absl::NotFoundError("no UI file " + file));
  http::Response r;
  r.status = 200;
  r.content_type = ContentTypeOf(file);
  r.body = std::move(*data);
  // The files change with the binary; revalidating is cheap and avoids a stale page after an
  // upgrade.
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  if (file == "index.html") {
    // The page loads only its own files and talks only to this server; previews and picked
    // images are data: URLs.
    r.headers.emplace_back("Content-Security-Policy",
                           "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                           "base-uri 'none'; frame-ancestors 'none'; form-action 'self'");
    r.headers.emplace_back("Referrer-Policy", "no-referrer");
  }
  return r;
}

}  // namespace kiln::api
