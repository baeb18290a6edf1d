// Recycled storage for the rasterizer's large per-call buffers (tile lists, packed records, gradient rows).
//
// Each forward/backward needs tens to hundreds of MB of scratch. Fresh allocations that large are mmapped by malloc
// and returned to the OS on free, so every call pays a page fault per 4 KiB page plus the kernel's zeroing (measured
// here: 26 ms for 56 MB in this VM, ~12% of a 1M-primitive forward). Blocks of at least kMinPooledBytes released by
// PoolAllocator are kept (up to kMaxCachedBytes in all) and handed to the next request of a similar size.
// A block that no request has taken for kMaxIdleAcquires pooled requests is freed: as densification grows the
// scene, the buffers of earlier sizes no longer fit any request and would otherwise sit idle up to the cap. A request
// that no cached block fits frees at once the idle blocks between half its size and its size (most likely the same
// buffer's earlier, smaller versions), so growth does not keep two generations of buffers alive.
//
// New blocks get kHeadroom more than asked for and are cached under their real capacity: the sizes of a training
// step's buffers move by a few percent from one camera to the next (the tile intersections) or as the scene grows,
// and a block sized exactly for one request would miss the next slightly larger one, which then page-faults a fresh
// block in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace sf_cpu {

class BufferPool {
 public:
  static constexpr size_t kMinPooledBytes = size_t(1) << 20;  // smaller blocks: plain malloc (its bins recycle them)
  static constexpr size_t kMaxCachedBytes = size_t(1) << 29;  // idle memory kept for reuse, at most
  static constexpr uint64_t kMaxIdleAcquires = 64;             // a few training steps' worth of requests

  static BufferPool& instance() {
    static BufferPool* pool = new BufferPool();  // never destroyed: blocks may be released during interpreter exit
    return *pool;
  }

  // A block of at least `bytes` (64-byte aligned): a cached one no more than twice as large, else a new one.
  void* acquire(size_t bytes) {
    if (bytes < kMinPooledBytes) {
      void* ptr = std::aligned_alloc(64, round_up(bytes));
      if (ptr == nullptr) throw std::bad_alloc();
      return ptr;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    ++acquires_;
    evict_idle();
    size_t best = blocks_.size();
    for (size_t i = 0; i < blocks_.size(); ++i)
      if (blocks_[i].bytes >= bytes && blocks_[i].bytes <= 2 * bytes &&
          (best == blocks_.size() || blocks_[i].bytes < blocks_[best].bytes))
        best = i;
    if (best != blocks_.size()) {
      void* ptr = blocks_[best].ptr;
      cached_ -= blocks_[best].bytes;
      live_[ptr] = blocks_[best].bytes;
      blocks_.erase(blocks_.begin() + long(best));
      return ptr;
    }
    for (size_t i = 0; i < blocks_.size();) {  // stale smaller versions of this request's buffer
      if (2 * blocks_[i].bytes >= bytes && blocks_[i].bytes < bytes) {
        std::free(blocks_[i].ptr);
        cached_ -= blocks_[i].bytes;
        blocks_.erase(blocks_.begin() + long(i));
      } else {
        ++i;
      }
    }
    const size_t capacity = round_up(bytes + bytes / kHeadroom);
    void* ptr = capacity >= kHugeBytes ? acquire_huge(capacity) : std::aligned_alloc(64, capacity);
    if (ptr == nullptr) throw std::bad_alloc();
    live_[ptr] = capacity;
    return ptr;
  }

  void release(void* ptr, size_t bytes) {
    bytes = round_up(bytes);
    if (bytes >= kMinPooledBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = live_.find(ptr);
      if (it != live_.end()) {  // cached under its real capacity
        bytes = it->second;
        live_.erase(it);
      }
      while (!blocks_.empty() && cached_ + bytes > kMaxCachedBytes) {  // evict the oldest
        std::free(blocks_.front().ptr);
        cached_ -= blocks_.front().bytes;
        blocks_.erase(blocks_.begin());
      }
      if (cached_ + bytes <= kMaxCachedBytes) {
        blocks_.push_back({ptr, bytes, acquires_});
        cached_ += bytes;
        return;
      }
    }
    std::free(ptr);
  }

 private:
  struct Block {
    void* ptr;
    size_t bytes;
    uint64_t released_at;  // value of acquires_ when it was released
  };
  void evict_idle() {
    for (size_t i = 0; i < blocks_.size();) {
      if (acquires_ - blocks_[i].released_at > kMaxIdleAcquires) {
        std::free(blocks_[i].ptr);
        cached_ -= blocks_[i].bytes;
        blocks_.erase(blocks_.begin() + long(i));
      } else {
        ++i;
      }
    }
  }
  static size_t round_up(size_t bytes) { return (bytes + 63) / 64 * 64; }
  static constexpr size_t kHeadroom = 16;  // new pooled blocks are 1/16 larger than their first request
  // Blocks of several MB are read in random order (gradient rows gathered per primitive, records through tile lists):
  // with 4 KiB pages nearly every such read also misses the TLB. They are aligned to 2 MiB and marked for transparent
  // huge pages (Linux; where THP is "madvise", as on these hosts, nothing else would give them huge pages).
  static constexpr size_t kHugeBytes = size_t(4) << 20;
  static void* acquire_huge(size_t bytes) {
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t size = (bytes + kHuge - 1) / kHuge * kHuge;
    void* ptr = std::aligned_alloc(kHuge, size);
    if (ptr == nullptr) return nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(ptr, size, MADV_HUGEPAGE);  // advisory: a refusal leaves ordinary pages
#endif
    return ptr;
  }
  std::mutex mutex_;
  std::vector<Block> blocks_;
  std::unordered_map<void*, size_t> live_;  // capacity of each pooled block handed out and not yet released
  size_t cached_ = 0;
  uint64_t acquires_ = 0;
};

// Row stride (in elements of T) of `count`-element rows padded to whole 64-byte cache lines. With the pool's 64-byte
// aligned blocks every row then starts on a line: rows read in random order (depth-ordered records, per-primitive
// sums) cost one line each instead of two for those that would straddle a boundary.
template <typename T> constexpr int line_stride(int count) {
  constexpr int kLine = int(64 / sizeof(T));
  return (count + kLine - 1) / kLine * kLine;
}

// std::allocator replacement that draws large blocks from BufferPool. A block is released under the size that was
// requested, which never exceeds its real size, so it is only ever handed out again for requests that fit.
template <typename T> struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <typename U> PoolAllocator(const PoolAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(BufferPool::instance().acquire(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { BufferPool::instance().release(p, n * sizeof(T)); }
  // Sized construction and resize default-initialise (no zeroing): every pooled array is written before it is read,
  // and zeroing tens of MB per call costs a pass of its own. Zeros are asked for explicitly: PooledVector<T>(n, 0).
  template <typename U> void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args> void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <typename U> bool operator==(const PoolAllocator<U>&) const noexcept { return true; }
  template <typename U> bool operator!=(const PoolAllocator<U>&) const noexcept { return false; }
};

// The rasterizer's large arrays.
template <typename T> using PooledVector = std::vector<T, PoolAllocator<T>>;

}  // namespace sf_cpu
