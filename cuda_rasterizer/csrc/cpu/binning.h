// Tile binning for the CPU rasterizer: primitive -> tiles it may touch, then per-tile depth sort (ties by id).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "buffer_pool.h"

namespace sf_cpu {

// How far ahead (in primitives) the depth sort's last pass prefetches its scattered rank stores: far enough to keep a
// dozen cache misses in flight, since depth order scatters over arrays larger than the caches (1M+ primitives).
constexpr int64_t kGatherAhead = 16;

// Pixel range [lo, hi] (inclusive) whose centres p + 0.5 satisfy |p + 0.5 - m| <= r, clipped to [0, size - 1].
template <typename T, typename R> inline void pixel_span(T m, R r, int size, int& lo, int& hi) {
  lo = static_cast<int>(std::ceil(m - T(r) - T(0.5)));
  hi = static_cast<int>(std::floor(m + T(r) - T(0.5)));
  lo = std::max(lo, 0);
  hi = std::min(hi, size - 1);
}

// pixel -> tile: a shift for power-of-two tiles (pixel spans are clipped to >= 0), where four integer divisions per
// primitive were half of the rectangle pass
struct PixelToTile {
  int tile, shift = 0;
  bool pow2;
  explicit PixelToTile(int tile_size) : tile(tile_size), pow2((tile_size & (tile_size - 1)) == 0) {
    while ((1 << shift) < tile) ++shift;
  }
  int operator()(int v) const { return pow2 ? v >> shift : v / tile; }
};

// The tiles [x0, x1] x [y0, y1] a primitive is binned into (its pixel spans' tiles).
struct TileSpan {
  int x0 = 0, x1 = -1, y0 = 0, y1 = -1;
  // false: nothing to bin (zero radius, or off screen)
  template <typename T>
  bool set(T mx, T my, int32_t rx, int32_t ry, int width, int height, const PixelToTile& to_tile) {
    if (rx <= 0 || ry <= 0) return false;
    int px0, px1, py0, py1;
    pixel_span(mx, rx, width, px0, px1);
    pixel_span(my, ry, height, py0, py1);
    if (px0 > px1 || py0 > py1) return false;
    x0 = to_tile(px0); x1 = to_tile(px1); y0 = to_tile(py0); y1 = to_tile(py1);
    return true;
  }
  int width() const { return x1 - x0 + 1; }
};

// Intersections grouped by tile: ids[tile_start[t] .. tile_start[t+1]) are depth ranks r (ascending, i.e. (depth, id)
// order; the primitive is order[r]). Primitive order[r] (the r-th valid primitive by depth) owns emissions
// prim_offset[r] .. prim_offset[r+1), one per tile of its rectangle, row by row (grad_rows.h, emission_of); the backward
// writes each (tile, primitive)'s gradient row at its emission index and sums a primitive's rows in emission order.
// rank is order's inverse: rank[p] is primitive p's depth rank, -1 where p is not binned.
struct TileBins {
  PooledVector<int64_t> tile_start, prim_offset;
  PooledVector<int32_t> ids, order, rank;
  double phase_ms[3] = {0, 0, 0};  // wall time of the tile rectangles, the depth sort, the rest (SPLATFORGE_PROFILE)
};

// What the depth sort moves: a float depth's 32-bit key and the id in one 64-bit word, a double's 64-bit key beside
// its id; each with a 64-bit payload carried to the sorted order (the primitive's tile rectangle, which the tile
// lists then read in order instead of gathering it at random, a cache miss per primitive at scale).
template <typename T> struct DepthItem;
template <> struct DepthItem<float> {
  using Key = uint32_t;
  struct Type {
    uint64_t key_id;
    uint64_t payload;
  };
  static Type make(Key key, int32_t id, uint64_t payload) {
    return Type{(uint64_t(key) << 32) | uint32_t(id), payload};
  }
  static Key key(const Type& v) { return Key(v.key_id >> 32); }
  static int32_t id(const Type& v) { return int32_t(uint32_t(v.key_id)); }
};
template <> struct DepthItem<double> {
  using Key = uint64_t;
  struct Type {
    uint64_t key;
    uint64_t payload;
    int32_t id;
  };
  static Type make(Key key, int32_t id, uint64_t payload) { return Type{key, payload, id}; }
  static Key key(const Type& v) { return v.key; }
  static int32_t id(const Type& v) { return v.id; }
};

// The live primitives in (depth, id) order: ids[r] is the r-th one, payload[r] its payload; sort_by_depth's `rank`
// (n entries) is the inverse: rank[ids[r]] = r, -1 for the primitives that are not live.
struct DepthOrder {
  PooledVector<int32_t> ids;
  PooledVector<uint64_t> payload;
};

// Ids p with live[p] (and their payloads), sorted by (depths[p], p) (depths finite; -0 and +0 are equal): an LSD
// radix sort of order-preserving keys, stable, so equal depths keep id order. Only the bits in which the keys differ
// are sorted (key - min key), in as few passes of at most kDigitBits (kWideDigitBits for many items) as they need,
// each pass as narrow as that allows (depths over a few octaves: ~25 bits, 3 passes of 9 bits, 512 buckets). Every
// pass's histogram comes from one read, while the items are built. Above kParallelSort primitives the threads share
// every pass (per-thread histograms of contiguous chunks; thread t's items of a bucket go after those of threads < t,
// which keeps the sort stable): the same result for any thread count. `rank` gets -1 for the primitives that are
// not live and the last pass writes the others'.
constexpr int64_t kParallelSort = int64_t(1) << 16;
constexpr int kDigitBits = 11;
// Digits of up to kWideDigitBits from kWideDigitsFrom items on: a 25-bit key range then takes 2 passes instead of 3
// (1M primitives: ~120 items per bucket and pass, still long write runs; B3's sort 24-29 -> 18-22 ms), while fewer
// items keep the narrower digits (110k: 8192 buckets of ~13 items each measured slower).
constexpr int kWideDigitBits = 13;
constexpr int64_t kWideDigitsFrom = int64_t(1) << 19;

template <typename T>
DepthOrder sort_by_depth(const T* depths, const PooledVector<uint8_t>& live, const uint64_t* payload, int32_t* rank,
                         int nthreads) {
  using Item = DepthItem<T>;
  using Key = typename Item::Key;
  using Entry = typename Item::Type;
  constexpr int kKeyBits = 8 * int(sizeof(Key)), kMaxPasses = (kKeyBits + kDigitBits - 1) / kDigitBits;
  constexpr int kMaxBuckets = 1 << kWideDigitBits;
  const int64_t n = int64_t(live.size());
  const int nt = n >= kParallelSort ? std::max(1, nthreads) : 1;
  std::vector<int64_t> live_before(size_t(nt) + 1, 0);
  std::vector<Key> key_lo(size_t(nt), ~Key(0)), key_hi(size_t(nt), Key(0));
  // hist[t][pass][bucket]: thread t's counts of its current chunk (each thread zeroes the passes it uses)
  PooledVector<int64_t> hist(size_t(nt) * kMaxPasses * kMaxBuckets);
  PooledVector<Entry> items, tmp;
  DepthOrder sorted;
  PooledVector<int32_t>& ids = sorted.ids;
  uint64_t* sorted_payload = nullptr;
  int64_t m = 0;
  Key base = 0;
  int passes = 0, bits = 0;
  bool skip[kMaxPasses] = {};
#pragma omp parallel num_threads(nt)
  {
    const int team = omp_get_num_threads(), t = omp_get_thread_num();
    auto chunk = [&](int64_t size, int64_t& lo, int64_t& hi) {
      lo = size * t / team;
      hi = size * (t + 1) / team;
    };
    int64_t lo, hi;
    chunk(n, lo, hi);
    int64_t here = 0;
    for (int64_t p = lo; p < hi; ++p) here += live[p] != 0;
    live_before[t + 1] = here;
#pragma omp barrier
#pragma omp single
    {
      for (int i = 0; i < team; ++i) live_before[i + 1] += live_before[i];
      m = live_before[team];
      items.resize(m);
      tmp.resize(m);
      ids.resize(m);
      sorted.payload.resize(m);
      sorted_payload = sorted.payload.data();
    }  // (implicit barrier)
    Key k_lo = ~Key(0), k_hi = 0;
    for (int64_t p = lo, q = live_before[t]; p < hi; ++p)
      if (live[p]) {
        const T depth = depths[p] + T(0);  // -0 -> +0: equal depths must tie (then id order decides)
        Key k;
        std::memcpy(&k, &depth, sizeof(Key));
        constexpr Key sign = Key(1) << (kKeyBits - 1);
        k = (k & sign) ? ~k : (k | sign);  // IEEE bits -> unsigned keys in the order of the values
        k_lo = std::min(k_lo, k);
        k_hi = std::max(k_hi, k);
        items[q++] = Item::make(k, static_cast<int32_t>(p), payload[p]);
      } else {
        rank[p] = -1;  // not binned (the last pass writes the others' ranks)
      }
    key_lo[t] = k_lo;
    key_hi[t] = k_hi;
#pragma omp barrier
#pragma omp single
    {
      Key lo_all = ~Key(0), hi_all = 0;
      for (int i = 0; i < team; ++i) {
        lo_all = std::min(lo_all, key_lo[i]);
        hi_all = std::max(hi_all, key_hi[i]);
      }
      base = m > 0 ? lo_all : 0;
      int width = 0;  // bits in which the keys differ
      for (Key range = m > 0 ? hi_all - lo_all : 0; range != 0; range >>= 1) ++width;
      const int digit_bits = m >= kWideDigitsFrom ? kWideDigitBits : kDigitBits;
      passes = (width + digit_bits - 1) / digit_bits;
      bits = passes > 0 ? (width + passes - 1) / passes : 0;
    }  // (implicit barrier)
    const Key mask = (Key(1) << bits) - 1;
    const int buckets = 1 << bits;
    auto digit = [&](const Entry& v, int pass) { return int(((Item::key(v) - base) >> (pass * bits)) & mask); };
    // every pass's counts of this thread's items as built (its chunk of the first pass)
    int64_t* h = &hist[size_t(t) * kMaxPasses * kMaxBuckets];
    for (int pass = 0; pass < passes; ++pass) std::fill(h + pass * kMaxBuckets, h + pass * kMaxBuckets + buckets, 0);
    for (int64_t i = live_before[t]; i < live_before[t + 1]; ++i)
      for (int pass = 0; pass < passes; ++pass) ++h[pass * kMaxBuckets + digit(items[i], pass)];
#pragma omp barrier
#pragma omp single
    for (int pass = 0; pass < passes; ++pass) {  // a digit the same everywhere leaves the order as it is
      for (int b = 0; b < buckets && !skip[pass]; ++b) {
        int64_t total = 0;
        for (int i = 0; i < team; ++i) total += hist[(size_t(i) * kMaxPasses + pass) * kMaxBuckets + b];
        skip[pass] = total == m;
      }
    }  // (implicit barrier)
    int last = -1;  // the last pass that moves anything writes the ids instead of items
    for (int pass = 0; pass < passes; ++pass)
      if (!skip[pass]) last = pass;
    // the first pass's chunk of each thread: the items it built, whose counts the build took
    lo = live_before[t];
    hi = live_before[t + 1];
    // the sorted order's outputs of the item at position `pos`; the rank is a scattered store, prefetched ahead
    auto place = [&](const Entry& v, int64_t pos, int64_t i) {
      if (i + kGatherAhead < hi) __builtin_prefetch(&rank[Item::id(items[i + kGatherAhead])], 1);
      const int32_t id = Item::id(v);
      ids[pos] = id;
      sorted_payload[pos] = v.payload;
      rank[id] = static_cast<int32_t>(pos);
    };
    if (last < 0)  // already in order
      for (int64_t i = lo; i < hi; ++i) place(items[i], i, i);
    bool counted = true;  // h holds this thread's counts of its chunk for the next pass
    for (int pass = 0; pass < passes; ++pass) {
      if (skip[pass]) continue;
      int64_t* hp = h + pass * kMaxBuckets;
      if (!counted) {
        std::fill(hp, hp + buckets, 0);
        for (int64_t i = lo; i < hi; ++i) ++hp[digit(items[i], pass)];
#pragma omp barrier
      }
#pragma omp single
      {
        int64_t run = 0;
        for (int b = 0; b < buckets; ++b)
          for (int i = 0; i < team; ++i) {
            int64_t& c = hist[(size_t(i) * kMaxPasses + pass) * kMaxBuckets + b];
            const int64_t count = c;
            c = run;
            run += count;
          }
      }  // (implicit barrier)
      if (pass == last) {
        for (int64_t i = lo; i < hi; ++i) {
          const Entry v = items[i];
          place(v, hp[digit(v, pass)]++, i);
        }
        break;
      }
      for (int64_t i = lo; i < hi; ++i) {
        const Entry v = items[i];
        tmp[hp[digit(v, pass)]++] = v;
      }
#pragma omp barrier
#pragma omp single
      items.swap(tmp);
      // (implicit barrier) with one thread the counts of the build serve every pass; with several, the later
      // passes count equal chunks of the moved items
      if (team > 1) {
        chunk(m, lo, hi);
        counted = false;
      }
    }
  }
  return sorted;
}

// A tile rectangle in one word (four 16-bit tile coordinates), the payload the depth sort carries.
struct PackedRect {
  static uint64_t pack(int x0, int x1, int y0, int y1) {
    return uint64_t(uint16_t(x0)) | uint64_t(uint16_t(x1)) << 16 | uint64_t(uint16_t(y0)) << 32 |
           uint64_t(uint16_t(y1)) << 48;
  }
  static void unpack(uint64_t v, int32_t (&rc)[4]) {
    rc[0] = int32_t(v & 0xffff);
    rc[1] = int32_t((v >> 16) & 0xffff);
    rc[2] = int32_t((v >> 32) & 0xffff);
    rc[3] = int32_t(v >> 48);
  }
};

// Each primitive's tile rectangle (packed) and whether it is binned, for p in [lo, hi): TileSpan::set's spans and
// tiles (the backward recomputes them there, grad_rows.h) without its early returns, so the loop has no branch and
// vectorises (B3's 1M primitives: 6-7 -> 3 ms). A rectangle is only read where `live` is set.
template <typename T, bool kPow2>
void tile_rects(const T* means2d, const int32_t* radii, int64_t lo, int64_t hi, int width, int height,
                const PixelToTile& to_tile, uint64_t* rect, uint8_t* live) {
  const int shift = to_tile.shift, tile = to_tile.tile;
  auto to_tiles = [&](int v) { return kPow2 ? v >> shift : v / tile; };
  for (int64_t p = lo; p < hi; ++p) {
    const int32_t rx = radii[2 * p], ry = radii[2 * p + 1];
    int px0, px1, py0, py1;
    pixel_span(means2d[2 * p], rx, width, px0, px1);
    pixel_span(means2d[2 * p + 1], ry, height, py0, py1);
    live[p] = uint8_t((rx > 0) & (ry > 0) & (px0 <= px1) & (py0 <= py1));
    rect[p] = PackedRect::pack(to_tiles(px0), to_tiles(px1), to_tiles(py0), to_tiles(py1));
  }
}

// Valid primitives are first sorted once by (depth, id); emissions follow that order, and a stable counting sort
// by tile then leaves every tile's list in (depth, id) order with no per-tile sort.
template <typename T>
TileBins bin_tiles(const T* means2d, const int32_t* radii, const T* depths, int64_t n, int width, int height,
                   int tile, int nthreads) {
  const int tx = (width + tile - 1) / tile, ty = (height + tile - 1) / tile;
  if (tx > 0xffff || ty > 0xffff)
    throw std::runtime_error("splatforge: image of " + std::to_string(width) + " x " + std::to_string(height) +
                             " pixels has more than 65535 tiles of " + std::to_string(tile) +
                             " pixels in a row or column; use larger tiles");
  const int64_t n_tiles = int64_t(tx) * ty;
  const double t_start = omp_get_wtime();
  TileBins bins;
  PooledVector<uint64_t> rect(n);
  PooledVector<uint8_t> live(n);
  bins.rank.resize(n);
  const PixelToTile to_tile(tile);
#pragma omp parallel num_threads(nthreads)
  {
    const int team = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t lo = n * t / team, hi = n * (t + 1) / team;
    if (to_tile.pow2)
      tile_rects<T, true>(means2d, radii, lo, hi, width, height, to_tile, rect.data(), live.data());
    else
      tile_rects<T, false>(means2d, radii, lo, hi, width, height, to_tile, rect.data(), live.data());
  }
  // (depth, id) order of the live primitives (deterministic and independent of the thread count), their rectangles
  // carried along
  const double t_sort = omp_get_wtime();
  DepthOrder sorted = sort_by_depth(depths, live, rect.data(), bins.rank.data(), nthreads);
  const double t_rest = omp_get_wtime();
  bins.order = std::move(sorted.ids);
  const uint64_t* rect_r = sorted.payload.data();
  const int64_t nv = int64_t(bins.order.size());
  bins.prim_offset.resize(nv + 1);
  bins.prim_offset[0] = 0;
  bins.tile_start.resize(n_tiles + 1);
  // The rest in one parallel region, each thread on one contiguous chunk of ranks throughout: its emissions are then
  // one contiguous run too. A stable counting sort by tile: each thread counts its chunk's tiles, and after the
  // others' counts are in walks its rectangles again, writing each rank into its tiles' lists.
  const int nt = std::max(1, nthreads);
  std::vector<int64_t> emitted_before(size_t(nt) + 1, 0);
  // per thread: counts (then list positions) of every tile
  PooledVector<int64_t> hist(size_t(nt) * n_tiles);
  // per thread: a difference grid of the tile counts, one larger than the tiles each way
  const int64_t cx = tx + 1, corner_stride = cx * (ty + 1);
  PooledVector<int64_t> corners(size_t(nt) * corner_stride);
  int64_t m = 0;
  bool too_many = false;
#pragma omp parallel num_threads(nt)
  {
    const int team = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t r_lo = nv * t / team, r_hi = nv * (t + 1) / team;
    int64_t* h = &hist[size_t(t) * n_tiles];
    int64_t* corner = &corners[size_t(t) * corner_stride];
    std::fill(corner, corner + corner_stride, int64_t(0));
    // Each rectangle's four corners in the difference grid (the tile counts are its 2D prefix sums: four increments
    // whatever the rectangle's size, and no branch on it); the thread's running emission end of each primitive.
    int64_t here = 0;
    for (int64_t r = r_lo; r < r_hi; ++r) {
      int32_t rc[4];
      PackedRect::unpack(rect_r[r], rc);
      int64_t* c0 = corner + int64_t(rc[2]) * cx;
      int64_t* c1 = corner + int64_t(rc[3] + 1) * cx;
      ++c0[rc[0]];
      --c0[rc[1] + 1];
      --c1[rc[0]];
      ++c1[rc[1] + 1];
      here += int64_t(rc[1] - rc[0] + 1) * (rc[3] - rc[2] + 1);
      bins.prim_offset[r + 1] = here;  // the other threads' emissions before this chunk are added below
    }
    emitted_before[t + 1] = here;
    for (int y = 0; y < ty; ++y) {  // the counts: prefix sums of the corners along x, then down y
      int64_t run = 0;
      for (int x = 0; x < tx; ++x) {
        run += corner[int64_t(y) * cx + x];
        h[int64_t(y) * tx + x] = run + (y > 0 ? h[int64_t(y - 1) * tx + x] : 0);
      }
    }
#pragma omp barrier
#pragma omp single
    {
      for (int i = 0; i < team; ++i) emitted_before[i + 1] += emitted_before[i];
      m = emitted_before[team];
      too_many = m >= (int64_t(1) << 31);
      if (!too_many) {
        bins.ids.resize(m);
        int64_t run = 0;
        for (int64_t k = 0; k < n_tiles; ++k) {
          bins.tile_start[k] = run;
          for (int i = 0; i < team; ++i) {
            const int64_t c = hist[size_t(i) * n_tiles + k];
            hist[size_t(i) * n_tiles + k] = run;
            run += c;
          }
        }
        bins.tile_start[n_tiles] = run;
      }
    }  // (implicit barrier)
    if (!too_many) {
      const int64_t before = emitted_before[t];
      int32_t* ids = bins.ids.data();
      for (int64_t r = r_lo; r < r_hi; ++r) {
        if (before != 0) bins.prim_offset[r + 1] += before;
        int32_t rc[4];
        PackedRect::unpack(rect_r[r], rc);
        for (int y = rc[2]; y <= rc[3]; ++y) {
          int64_t* hy = h + int64_t(y) * tx;
          for (int x = rc[0]; x <= rc[1]; ++x) ids[hy[x]++] = static_cast<int32_t>(r);
        }
      }
    }
  }
  if (too_many) throw std::runtime_error("splatforge: too many tile intersections (>= 2^31)");
  bins.phase_ms[0] = 1e3 * (t_sort - t_start);
  bins.phase_ms[1] = 1e3 * (t_rest - t_sort);
  bins.phase_ms[2] = 1e3 * (omp_get_wtime() - t_rest);
  return bins;
}

}  // namespace sf_cpu
