// TorchGeneration is a plain holder; its behaviour lives in Pipeline (pipeline.cc).
#include "engine/generation.h"
