// Request and Response: the HTTP messages handlers see, free of Beast types. Plain data.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::http {

struct Request {
  std::string method;                          // upper case: GET, POST, ...
  std::string target;                          // as sent: path and query
  std::string path;                            // decoded path, no query
  std::map<std::string, std::string> query;    // decoded; the last value wins
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string remote;  // peer address

  // The header's value, or nullopt. `name` must be lower case.
  std::optional<std::string_view> Header(std::string_view name) const;
  // The media type of Content-Type, lower-cased, without parameters ("application/json").
  std::string MediaType() const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;

  static Response Json(int status, std::string body);
};

// Percent-decodes `s` ('+' stays '+' in paths; `plus_is_space` for query strings). Returns
// nullopt on a malformed escape.
std::optional<std::string> PercentDecode(std::string_view s, bool plus_is_space);

// Splits a target into its decoded path and query map. Returns false on a malformed target.
bool ParseTarget(std::string_view target, std::string& path,
                 std::map<std::string, std::string>& query);

}  // namespace kiln::http
