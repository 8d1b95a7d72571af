#include "http/message.h"

#include "core/strings.h"

namespace kiln::http {

std::optional<std::string_view> Request::Header(std::string_view name) const {
  auto it = headers.find(std::string(name));
  if (it == headers.end()) return std::nullopt;
  return std::string_view(it->second);
}

std::string Request::MediaType() const {
  auto ct = Header("content-type");
  if (!ct) return "";
  std::string_view v = *ct;
  v = v.substr(0, v.find(';'));
  return ToLowerAscii(Trim(v));
}

Response Response::Json(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

std::optional<std::string> PercentDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      auto hex = [](char h) -> int {
        if (h >= '0' && h <= '9') return h - '0';
        if (h >= 'a' && h <= 'f') return h - 'a' + 10;
        if (h >= 'A' && h <= 'F') return h - 'A' + 10;
        return -1;
      };
      const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool ParseTarget(std::string_view target, std::string& path,
                 std::map<std::string, std::string>& query) {
  const size_t q = target.find('?');
  auto p = PercentDecode(target.substr(0, q), false);
  if (!p || p->empty() || (*p)[0] != '/') return false;
  path = std::move(*p);
  if (q == std::string_view::npos) return true;
  for (std::string_view pair : Split(target.substr(q + 1), "&", /*skip_empty=*/true)) {
    const size_t eq = pair.find('=');
    auto k = PercentDecode(pair.substr(0, eq), true);
    auto v = PercentDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!k || !v) return false;
    query[*k] = *v;
  }
  return true;
}

}  // namespace kiln::http
