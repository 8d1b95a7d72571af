#include "api/routes.h"

#include "api/errors.h"
#include "api/handlers.h"

namespace kiln::api {

http::Router MakeRouter() { return http::Router(RenderHttpError); }

void AddRoutes(http::Router& router, const ApiContext& ctx) {
  const ApiContext* c = &ctx;
  router.Add("POST", "/v1/images/generations",
             [c](const http::Request& r, const http::PathParams&) {
               return HandleImageGenerations(*c, r);
             });
  router.Add("POST", "/v1/images/edits", [c](const http::Request& r, const http::PathParams&) {
    return HandleImageEdits(*c, r);
  });
  router.Add("GET", "/v1/models", [c](const http::Request& r, const http::PathParams&) {
    return HandleListModels(*c, r);
  });
  router.Add("GET", "/v1/models/{id}", [c](const http::Request&, const http::PathParams& p) {
    return HandleGetModel(*c, p.at("id"));
  });
  router.Add("GET", "/healthz",
             [c](const http::Request& r, const http::PathParams&) { return HandleHealthz(*c, r); });
  router.Add("GET", "/readyz",
             [c](const http::Request& r, const http::PathParams&) { return HandleReadyz(*c, r); });
}

}  // namespace kiln::api
