// AUTOMATIC1111's web UI API (/sdapi/v1), as the tools built for it call it: txt2img,
// img2img, progress, interrupt, skip, options, sd-models, samplers, schedulers, upscalers and
// scripts. The session state (default checkpoint, calls in flight) lives with the routes.
#pragma once

#include "api/a1111_session.h"
#include "api/routes.h"
#include "http/router.h"

namespace kiln::api {

void AddA1111Routes(http::Router& router, const ApiContext& ctx);

}  // namespace kiln::api
