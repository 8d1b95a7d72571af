// Parsing and validation of the OpenAI images requests (JSON for generations, multipart form
// for edits) into an engine::GenerationRequest. Both bodies are read through one FieldSource,
// so the rules live in one place. Every error names the offending field. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/image.h"
#include "engine/model_repository.h"
#include "engine/request.h"
#include "http/address_policy.h"
#include "http/multipart.h"
#include "nlohmann/json.hpp"

namespace kiln::api {

// Typed access to request fields; absent fields are nullopt, wrongly typed ones are errors.
class FieldSource {
 public:
  virtual ~FieldSource() = default;
  virtual std::vector<std::string> Names() const = 0;
  virtual absl::StatusOr<std::optional<std::string>> String(const std::string& name) const = 0;
  virtual absl::StatusOr<std::optional<int64_t>> Int(const std::string& name) const = 0;
  virtual absl::StatusOr<std::optional<uint64_t>> Uint(const std::string& name) const = 0;
  virtual absl::StatusOr<std::optional<double>> Double(const std::string& name) const = 0;
};

// A JSON object body. REQUIRES: object.is_object().
class JsonFields final : public FieldSource {
 public:
  explicit JsonFields(const nlohmann::json& object) : object_(object) {}
  std::vector<std::string> Names() const override;
  absl::StatusOr<std::optional<std::string>> String(const std::string& name) const override;
  absl::StatusOr<std::optional<int64_t>> Int(const std::string& name) const override;
  absl::StatusOr<std::optional<uint64_t>> Uint(const std::string& name) const override;
  absl::StatusOr<std::optional<double>> Double(const std::string& name) const override;

 private:
  const nlohmann::json& object_;
};

// The non-file parts of a multipart form.
class FormFields final : public FieldSource {
 public:
  explicit FormFields(const std::vector<http::FormPart>& parts);
  std::vector<std::string> Names() const override;
  absl::StatusOr<std::optional<std::string>> String(const std::string& name) const override;
  absl::StatusOr<std::optional<int64_t>> Int(const std::string& name) const override;
  absl::StatusOr<std::optional<uint64_t>> Uint(const std::string& name) const override;
  absl::StatusOr<std::optional<double>> Double(const std::string& name) const override;

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> names_;
};

enum class ResponseFormat { kB64Json, kUrl };

// A validated images request, ready for the engine.
struct ImageRequest {
  const engine::ModelSpec* spec = nullptr;
  std::string model;
  engine::GenerationRequest generation;
  ResponseFormat response_format = ResponseFormat::kB64Json;
  std::string image_bytes;  // the uploaded input of an edit or img2img, as sent (validated)
  bool seed_given = false;  // the client chose the seed (else a random one was drawn)
  int priority = 0;         // Kiln extension: within the request's class, higher first
  int64_t deadline_ms = 0;  // Kiln extension: wanted within this many ms from now; 0 = none
  std::string webhook;      // jobs only
  std::string custom_id;    // batch lines only
};

inline constexpr size_t kMaxPromptChars = 1000;

// The bytes of an image sent as text: base64, or a base64 data: URL. Errors name `field`.
absl::StatusOr<std::string> DecodeBase64Field(std::string_view text, const std::string& field);
// An uploaded image decoded within the upload limits (16 MiB, 4096x4096). Errors name `field`;
// Unavailable (503, retry) when every decoding slot stays busy for 10 s.
absl::StatusOr<engine::Image> DecodeUpload(std::string_view bytes, const std::string& field);

// POST /v1/images/generations.
absl::StatusOr<ImageRequest> ParseGenerationsRequest(std::string_view json_body,
                                                     const engine::ModelRepository& models);

// POST /v1/jobs (and each line of POST /v1/batches, with `batch_line`): the generations fields,
// plus `image` (base64 or a data: URL) with `mode`, `strength` and `image_guidance_scale` for
// edits, plus `priority`, `deadline_ms`, `webhook` (and `custom_id` on batch lines).
// `webhooks`: a webhook whose host is an address literal it refuses is a 400 naming `webhook`.
absl::StatusOr<ImageRequest> ParseJobRequest(const nlohmann::json& body,
                                             const engine::ModelRepository& models,
                                             const http::AddressPolicy& webhooks, bool batch_line);

// POST /v1/images/edits: the parsed form parts (the image among them).
absl::StatusOr<ImageRequest> ParseEditsRequest(const std::vector<http::FormPart>& parts,
                                               const engine::ModelRepository& models);

// POST /v1/jobs as multipart/form-data: the edits form (the image file optional: without it,
// a generation job), plus `webhook`.
absl::StatusOr<ImageRequest> ParseJobForm(const std::vector<http::FormPart>& parts,
                                          const engine::ModelRepository& models,
                                          const http::AddressPolicy& webhooks);

}  // namespace kiln::api
