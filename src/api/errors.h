// The one place where a Status becomes an HTTP status and an OpenAI-shaped error body:
// {"error": {"message", "type", "param", "code"}}. Stateless; thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "http/message.h"

namespace kiln::api {

int HttpStatusFor(const absl::Status& status);

// The error response for a failed Status (its field, if any, becomes `param`).
http::Response ErrorResponse(const absl::Status& status);

// An error response for failures found outside handlers (router, HTTP parsing).
http::Response RenderHttpError(int http_status, const std::string& message);

}  // namespace kiln::api
