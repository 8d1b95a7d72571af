// The HTTP API: wires every endpoint into a Router. The context must outlive the router.
#pragma once

#include "engine/model_repository.h"
#include "http/router.h"

namespace kiln::api {

struct ApiContext {
  const engine::ModelRepository* models = nullptr;
  size_t max_json_bytes = 1 << 20;        // /v1/images/generations bodies
  size_t max_multipart_bytes = 24 << 20;  // /v1/images/edits bodies
};

// A router whose errors use the OpenAI error shape.
http::Router MakeRouter();

void AddRoutes(http::Router& router, const ApiContext& context);

}  // namespace kiln::api
