// Router: maps (method, path pattern) to handlers. Patterns are literal segments and `{name}`
// captures ("/v1/jobs/{id}"); a last segment `{name*}` captures the rest of the path
// ("/v1/files/{key*}"). Routes are added before serving starts; Dispatch is thread-safe.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "http/message.h"

namespace kiln::http {

using PathParams = std::map<std::string, std::string>;
using Handler = std::function<Response(const Request&, const PathParams&)>;
// Renders an error response (the API's error shape) for failures the router detects itself.
using ErrorRenderer = std::function<Response(int status, const std::string& message)>;

class Router {
 public:
  explicit Router(ErrorRenderer render_error);

  // `runs_inline`: the handler never blocks (it parses a small body and returns or defers), so
  // the server may run it on the I/O thread and save a thread hop.
  void Add(std::string method, std::string pattern, Handler handler, bool runs_inline = false);

  // The route a request matches, found once and used for dispatch, metrics and traces.
  struct Match {
    int route = -1;  // index of the matching route; -1: none for this method
    PathParams params;
    std::vector<std::string> allowed;  // methods the path allows, when route is -1
  };
  Match Resolve(const Request& request) const;
  // The matched route's pattern ("/v1/jobs/{id}"), or "" when none matched.
  const std::string& Pattern(const Match& match) const;
  // Whether the matched route was added with `runs_inline`.
  bool RunsInline(const Match& match) const;

  // Runs the matching handler: 404 for an unknown path, 405 (with Allow) for a known path and
  // another method.
  Response Dispatch(const Request& request, const Match& match) const;
  Response Dispatch(const Request& request) const { return Dispatch(request, Resolve(request)); }

  const ErrorRenderer& render_error() const { return render_error_; }
  // Every route as (method, pattern), in the order added (for the API description's test).
  std::vector<std::pair<std::string, std::string>> Routes() const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
    bool runs_inline = false;
  };
  static bool Matches(const Route& route, const std::vector<std::string>& segments,
                      PathParams& params);

  ErrorRenderer render_error_;
  std::vector<Route> routes_;
};

}  // namespace kiln::http
