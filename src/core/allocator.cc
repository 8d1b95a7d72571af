#include "core/allocator.h"

#include <malloc.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace kiln {

void TuneAllocatorForTensors() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);  // blocks below 1 GiB come from the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);  // keep up to 1 GiB of freed memory for reuse
  mallopt(M_TOP_PAD, 256 << 20);       // grow the heap in large steps
}

void ReleaseFreedMemory() {
  // One background thread trims, at most once a second, however many ask: a trim walks and
  // locks every arena, which the thread that freed the block (a replica, an I/O thread) should
  // not wait for. Never destroyed, so it outlives every caller.
  struct Trimmer {
    std::mutex mu;
    std::condition_variable wake;
    bool wanted = false;
    Trimmer() {
      std::thread([this] {
        std::unique_lock<std::mutex> lock(mu);
        for (;;) {
          wake.wait(lock, [this] { return wanted; });
          wanted = false;
          lock.unlock();
          malloc_trim(0);
          std::this_thread::sleep_for(std::chrono::seconds(1));
          lock.lock();
        }
      }).detach();
    }
  };
  static Trimmer* trimmer = new Trimmer;
  {
    std::lock_guard<std::mutex> lock(trimmer->mu);
    trimmer->wanted = true;
  }
  trimmer->wake.notify_one();
}

}  // namespace kiln
