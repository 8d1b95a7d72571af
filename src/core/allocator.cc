#include "core/allocator.h"

#include <malloc.h>

#include <atomic>

namespace kiln {

void TuneAllocatorForTensors() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);  // blocks below 1 GiB come from the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);  // keep up to 1 GiB of freed memory for reuse
  mallopt(M_TOP_PAD, 256 << 20);       // grow the heap in large steps
}

void ReleaseFreedMemory() {
  static std::atomic<bool> running{false};
  if (running.exchange(true)) return;
  malloc_trim(0);
  running = false;
}

}  // namespace kiln
