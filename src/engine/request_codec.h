// The durable form of a GenerationRequest: JSON that a job record carries through the queue,
// so that a retried or resumed job runs exactly the request that was accepted (its seed
// included). An input image is not inlined: the JSON names its store key. Stateless.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/request.h"
#include "nlohmann/json.hpp"

namespace kiln::engine {

// `image_key`: where the input image of an edit or img2img request is stored (ignored for
// text-to-image).
nlohmann::json RequestToJson(const GenerationRequest& request, const std::string& image_key);

// The request and its image key; the image itself is left empty for the caller to load.
struct StoredRequest {
  GenerationRequest request;
  std::string image_key;
};
absl::StatusOr<StoredRequest> RequestFromJson(const nlohmann::json& json);

// A compact summary for API answers (prompt, size, steps, sampler, seed, n, mode).
nlohmann::json RequestSummary(const GenerationRequest& request);

}  // namespace kiln::engine
