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
  std::vector<std::string> segments = Segments(pattern);
  routes_.push_back({std::move(method), std::move(pattern), std::move(segments), std::move(handler),
                     runs_inline});
}

Router::Match Router::Resolve(const Request& request) const {
  const std::vector<std::string> segments = Segments(request.path);
  Match m;
  for (size_t i = 0; i < routes_.size(); ++i) {
    const Route& route = routes_[i];
    PathParams params;
    if (!Matches(route, segments, params)) continue;
    if (route.method == request.method || (request.method == "HEAD" && route.method == "GET")) {
      m.route = static_cast<int>(i);
      m.params = std::move(params);
      m.allowed.clear();
      return m;
    }
    m.allowed.push_back(route.method);
  }
  return m;
}

const std::string& Router::Pattern(const Match& match) const {
  static const std::string kNone;
  return match.route < 0 ? kNone : routes_[static_cast<size_t>(match.route)].pattern;
}

bool Router::RunsInline(const Match& match) const {
  return match.route >= 0 && routes_[static_cast<size_t>(match.route)].runs_inline;
}

bool Router::Matches(const Route& route, const std::vector<std::string>& segments,
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

Response Router::Dispatch(const Request& request, const Match& match) const {
  if (match.route >= 0) {
    Response r = routes_[static_cast<size_t>(match.route)].handler(request, match.params);
    if (request.method == "HEAD") r.body.clear();
    return r;
  }
  if (!match.allowed.empty()) {
    Response r =
        render_error_(405, "method " + request.method + " is not allowed on " + request.path);
    r.headers.emplace_back("Allow", Join(match.allowed, ", "));
    return r;
  }
  return render_error_(404, "no route for " + request.path);
}

std::vector<std::pair<std::string, std::string>> Router::Routes() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Route& r : routes_) out.emplace_back(r.method, r.pattern);
  return out;
}

}  // namespace kiln::http
