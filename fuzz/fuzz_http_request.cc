// HTTP/1.1 requests as the server reads them (src/http/server.cc, Session): Beast's parser under
// Kiln's limits (16 KiB of header, chunk extensions counted against it, a 1 MiB body here), then
// Kiln's own parsing of what it accepted: the target (path and query, percent-decoded), the
// header names lower-cased into a Request, and a traceparent header.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/strings.h"
#include "core/trace_context.h"
#include "fuzz/fuzz_target.h"
#include "http/message.h"

namespace beast = boost::beast;
namespace bhttp = beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kHeaderLimit = 16 << 10;
  bhttp::request_parser<bhttp::string_body> parser;
  parser.body_limit(1 << 20);
  parser.header_limit(kHeaderLimit);
  parser.eager(true);
  size_t extension_bytes = 0;
  // The parser keeps a reference to the callback.
  auto count_extensions = [&](uint64_t, beast::string_view extensions, beast::error_code& ec) {
    extension_bytes += extensions.size();
    if (extension_bytes > kHeaderLimit) ec = bhttp::error::bad_chunk_extension;
  };
  parser.on_chunk_header(count_extensions);
  beast::error_code ec;
  size_t at = 0;
  while (at < size && !parser.is_done()) {
    const size_t used = parser.put(boost::asio::buffer(data + at, size - at), ec);
    at += used;
    if (ec == bhttp::error::need_more) return 0;  // a client that has not sent all of it yet
    if (ec || used == 0) return 0;
  }
  if (!parser.is_done()) return 0;
  auto req = parser.release();
  kiln::http::Request request;
  request.method = std::string(req.method_string());
  request.target = std::string(req.target());
  for (const auto& field : req) {
    request.headers[kiln::ToLowerAscii(std::string(field.name_string()))] =
        std::string(field.value());
  }
  request.body = std::move(req.body());
  if (auto header = request.Header("traceparent")) (void)kiln::ParseTraceparent(*header);
  (void)kiln::http::ParseTarget(request.target, request.path, request.query);
  (void)request.MediaType();
  return 0;
}
