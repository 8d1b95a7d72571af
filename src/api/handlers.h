// Endpoint handlers, one file per resource. Each takes the request and returns the response;
// thread-safe as long as the context is.
#pragma once

#include "api/routes.h"
#include "http/message.h"

namespace kiln::api {

http::Response HandleImageGenerations(const ApiContext& ctx, const http::Request& req);
http::Response HandleImageEdits(const ApiContext& ctx, const http::Request& req);
http::Response HandleListModels(const ApiContext& ctx, const http::Request& req);
http::Response HandleGetModel(const ApiContext& ctx, const std::string& id);
http::Response HandleHealthz(const ApiContext& ctx, const http::Request& req);
http::Response HandleReadyz(const ApiContext& ctx, const http::Request& req);

}  // namespace kiln::api
