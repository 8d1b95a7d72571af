// Process-wide allocator settings for tensor workloads. Call once, early in main().
#pragma once

namespace kiln {

// glibc serves large blocks with mmap and returns freed memory to the OS eagerly; a denoising
// step allocates and frees many activation-sized blocks, so every step paid for page faults
// (half the CPU time of a batched step on the test machine; see docs/benchmarks.md). This keeps
// freed blocks in the heap for reuse instead.
void TuneAllocatorForTensors();

}  // namespace kiln
