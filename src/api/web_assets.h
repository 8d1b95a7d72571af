// The browser UI's static files (web/), embedded into the binary at build time by
// cmake/embed_files.cmake. Immutable; thread-safe.
#pragma once

#include <string_view>
#include <vector>

namespace kiln::api {

struct WebAsset {
  std::string_view name;  // base name: "index.html", "app.js"
  std::string_view data;
};

const std::vector<WebAsset>& WebAssets();

}  // namespace kiln::api
