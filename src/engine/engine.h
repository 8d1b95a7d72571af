// Engine: what the batching core (sched/) needs from a loaded model, and nothing more: start a
// generation, advance a batch of generations by one denoising step, finish one into images, plus
// progress previews and checkpoints. Pipeline implements it for every model kind; the batching
// core's tests use a small fake. Implementations say their own thread-safety.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/image.h"
#include "engine/model_spec.h"
#include "engine/request.h"

namespace kiln::engine {

// One request in flight: its latents, sampler state and conditioning. Opaque outside its engine.
class Generation {
 public:
  virtual ~Generation() = default;
  virtual int step() const = 0;       // steps taken so far (img2img starts above 0)
  virtual int num_steps() const = 0;  // the request's steps
  virtual bool done() const = 0;
  // Denoiser rows this generation adds to a batch: n images times 1 (no guidance), 2 (CFG) or
  // 3 (instruction edit).
  virtual int rows() const = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;

  virtual const ModelSpec& spec() const = 0;

  // Encodes the prompts and prepares the noise or the input image.
  virtual absl::StatusOr<std::unique_ptr<Generation>> Start(const GenerationRequest& request) = 0;

  // One denoising step for every generation in `batch` (none may be done), whatever their
  // samplers, step counts and guidance. REQUIRES: every generation came from this engine's
  // Start or Resume and has the same image size.
  virtual absl::Status Step(std::span<Generation* const> batch) = 0;

  // The finished generation's n images. REQUIRES: generation.done().
  virtual absl::StatusOr<std::vector<Image>> Finish(Generation& generation) = 0;

  // A low-resolution preview of the first image's current estimate (at most `max_side` a side).
  // REQUIRES: at least one step taken.
  virtual absl::StatusOr<Image> Preview(const Generation& generation, int max_side = 64) = 0;

  // The generation's state at its step boundary, as bytes another process can Resume from.
  virtual absl::StatusOr<std::string> Checkpoint(const Generation& generation) = 0;
  // Start(request) with the state of `checkpoint`. InvalidArgument when the checkpoint is
  // damaged or was taken from a different request.
  virtual absl::StatusOr<std::unique_ptr<Generation>> Resume(const GenerationRequest& request,
                                                             std::string_view checkpoint) = 0;
};

}  // namespace kiln::engine
