// Process-wide allocator settings for tensor workloads (call once, early in main()), and the way
// to give memory back after a large one-off allocation. Thread-safe.
#pragma once

namespace kiln {

// glibc serves large blocks with mmap and returns freed memory to the OS eagerly; a denoising
// step allocates and frees many activation-sized blocks, so every step paid for page faults
// (half the CPU time of a batched step on the test machine; see docs/benchmarks.md). This keeps
// freed blocks in the heap for reuse instead.
void TuneAllocatorForTensors();

// Asks for the heap's free memory to go back to the OS (glibc's malloc_trim, on a background
// thread, at most once a second; calls in between are merged). With the tuning above, a large
// block that was freed (a 20 MB request body) stays in whichever arena allocated it, and each
// thread may use another arena: call this after such a block is freed. A trim walks the arenas,
// and the next denoising steps fault their pages in again.
void ReleaseFreedMemory();

}  // namespace kiln
