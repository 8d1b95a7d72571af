// Request and Response: the HTTP messages handlers see, free of Beast types. Plain data.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/trace_context.h"

namespace kiln::http {

struct Request {
  std::string method;                          // upper case: GET, POST, ...
  std::string target;                          // as sent: path and query
  std::string path;                            // decoded path, no query
  std::map<std::string, std::string> query;    // decoded; the last value wins
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string remote;  // peer address
  // The server span of this request: the trace of an incoming `traceparent` header (ignored when
  // malformed) or a new one, with a span id of its own; `parent_span_id` is the caller's span.
  TraceContext trace;
  std::string parent_span_id;
  // Whether the client has closed its connection (it sent FIN or reset it; a half-close counts,
  // as in Go's net/http and nginx): a non-blocking peek at the socket, from any thread. Valid
  // only until the answer is handed to the server; always false for a request pipelined behind
  // bytes the server has already read. Set by the server; null elsewhere (tests).
  std::function<bool()> client_left;

  // The header's value, or nullopt. `name` must be lower case.
  std::optional<std::string_view> Header(std::string_view name) const;
  // The media type of Content-Type, lower-cased, without parameters ("application/json").
  std::string MediaType() const;
};

// A response body produced over time (Server-Sent Events). The server calls Next() and writes
// each chunk it is given; nullopt ends the body. At most one Next() is outstanding, and
// `deliver` may be called from any thread. Cancel() tells the source the client went away.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  virtual void Next(std::function<void(std::optional<std::string>)> deliver) = 0;
  virtual void Cancel() {}
};

struct Response;
// Sends the final response of a deferred request; call exactly once, from any thread, before the
// Server is destroyed. The calling thread writes the response itself, as far as the socket takes
// it without blocking.
using Responder = std::function<void(Response)>;

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, `body` is ignored and the body is streamed from this source (chunked).
  std::shared_ptr<ChunkSource> stream;
  // When set, everything else is ignored: the server calls it with a Responder, and the handler
  // thread is free while the answer is being prepared (a sync generation waiting its turn).
  std::function<void(Responder)> deferred;

  static Response Json(int status, std::string body);
};

// Percent-decodes `s` ('+' stays '+' in paths; `plus_is_space` for query strings). Returns
// nullopt on a malformed escape.
std::optional<std::string> PercentDecode(std::string_view s, bool plus_is_space);

// Splits a target into its decoded path and query map. Returns false on a malformed target.
bool ParseTarget(std::string_view target, std::string& path,
                 std::map<std::string, std::string>& query);

}  // namespace kiln::http
