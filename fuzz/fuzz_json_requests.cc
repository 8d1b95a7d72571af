// The JSON request parsers, against the test models' descriptions: the first byte picks one
// (OpenAI generations, a job, a batch line, A1111 txt2img or img2img), the rest is the body.
#include "api/a1111_params.h"
#include "api/openai_params.h"
#include "core/json_parse.h"
#include "fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body = kiln::fuzz::AsText(data + 1, size - 1);
  const kiln::http::AddressPolicy webhooks;
  switch (data[0] % 5) {
    case 0:
      (void)kiln::api::ParseGenerationsRequest(body, kiln::fuzz::TestModels());
      break;
    case 1:
    case 2: {
      auto json = kiln::ParseJsonWithLimits(body, "the request body");
      if (json.ok()) {
        (void)kiln::api::ParseJobRequest(*json, kiln::fuzz::TestModels(), webhooks,
                                         /*batch_line=*/data[0] % 5 == 2);
      }
      break;
    }
    case 3:
      (void)kiln::api::ParseA1111Request(kiln::api::A1111Route::kTxt2Img, body,
                                         kiln::fuzz::TestModels(), "");
      break;
    default:
      (void)kiln::api::ParseA1111Request(kiln::api::A1111Route::kImg2Img, body,
                                         kiln::fuzz::TestModels(), "");
      break;
  }
  return 0;
}
