#include "http/router.h"

#include "core/strings.h"

namespace kiln::http {
namespace {

std::vector<std::string> Segments(const std::string& path) {
  std::vector<std::string> out;
  for (std::string_view s : Split(path, "/", /*skip_empty=*/true)) out.emplace_back(s);
  return out;
}

}  // namespace

Router::Router(ErrorRenderer render_error) : render_error_(std::move(render_error)) {}

void Router::Add(std::string method, std::string pattern, Handler handler, bool runs_inline) {
  routes_.push_back({std::move(method), Segments(pattern), std::move(handler), runs_inline});
}

bool Router::RunsInline(const Request& request) const {
  const std::vector<std::string> segments = Segments(request.path);
  for (const auto& route : routes_) {
    PathParams params;
    if (route.method == request.method && Match(route, segments, params)) {
      return route.runs_inline;
    }
  }
  return false;
}

bool Router::Match(const Route& route, const std::vector<std::string>& segments,
                   PathParams& params) {
  const bool rest = !route.segments.empty() && route.segments.back().size() > 3 &&
                    route.segments.back().ends_with("*}");
  if (rest ? segments.size() < route.segments.size() : route.segments.size() != segments.size()) {
    return false;
  }
  PathParams out;
  for (size_t i = 0; i < route.segments.size(); ++i) {
    const std::string& want = route.segments[i];
    if (rest && i + 1 == route.segments.size()) {
      std::vector<std::string> tail(segments.begin() + static_cast<std::ptrdiff_t>(i),
                                    segments.end());
      out[want.substr(1, want.size() - 3)] = Join(tail, "/");
    } else if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
      out[want.substr(1, want.size() - 2)] = segments[i];
    } else if (want != segments[i]) {
      return false;
    }
  }
  params = std::move(out);
  return true;
}

Response Router::Dispatch(const Request& request) const {
  const std::vector<std::string> segments = Segments(request.path);
  std::vector<std::string> allowed;
  for (const auto& route : routes_) {
    PathParams params;
    if (!Match(route, segments, params)) continue;
    if (route.method == request.method || (request.method == "HEAD" && route.method == "GET")) {
      Response r = route.handler(request, params);
      if (request.method == "HEAD") r.body.clear();
      return r;
    }
    allowed.push_back(route.method);
  }
  if (!allowed.empty()) {
    Response r =
        render_error_(405, "method " + request.method + " is not allowed on " + request.path);
    r.headers.emplace_back("Allow", Join(allowed, ", "));
    return r;
  }
  return render_error_(404, "no route for " + request.path);
}

}  // namespace kiln::http
