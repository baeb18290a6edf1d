// Shared by the CPU forward and backward blends: the raster inputs and outputs, the per-primitive records packed in
// depth order, and the per-row primitive lists of a tile (both passes walk the same lists).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../sf_math.h"
#include "binning.h"
#include "row_alpha.h"
#include "row_alpha_avx2.h"

namespace sf_cpu {

template <typename T> struct RasterInputs {
  const T* means2d;      // (N, 2)
  const T* fp_params;    // (N, FP::kParams)
  const T* colors;       // (N, C)
  const T* opacities;    // (N,)
  const T* depths;       // (N,)
  const int32_t* radii;  // (N, 2)
  const T* background;   // (C,) or nullptr
  int64_t n;
  int channels, width, height, tile;
};

template <typename T> struct RasterOutputs {
  T* colors;         // (H, W, C)
  T* alphas;         // (H, W)
  T* depths;         // (H, W) accumulated sum w z
  T* trans;          // (H, W) final transmittance
  int32_t* last_id;  // (H, W) primitive id of the last contributor, -1 none
  int32_t* last_pos; // (H, W) its position in bins.ids, -1 none
  int64_t* n_evals;  // number of primitive-pixel footprint evaluations (box-clipped lanes), for benchmarks
};

// Per-primitive data packed by depth rank (one record per binned primitive, read in ascending rank order by every
// tile): mean2d, radii, opacity, depth, the row-skip level ln(255 o) and slope (computed once here rather than once
// per tile), footprint params, colours.
template <typename T, typename FP> struct Packed {
  static constexpr int MX = 0, MY = 1, RX = 2, RY = 3, OP = 4, DEP = 5, LEV = 6, RSL = 7, FPP = 8,
                       COL = 8 + FP::kParams;
  int stride;
  PooledVector<T> data;
  const T* rec(int64_t r) const { return data.data() + r * stride; }
};

constexpr int64_t kPrefetch = 8;  // primitives ahead to prefetch in the blend loops
// Records ahead to prefetch in the list passes (list_tile_rows, mask_tile_rows): each tile entry reads one record,
// at random in a large scene (B3: 3.5M entries over 1M records), and the pass does little work per entry, so it needs
// many misses in flight: B3's forward blend phase on 1 thread 140 ms with 8 ahead, 121 with 16, 115 with 32. Since
// the forward's entries only store a row mask (the lists are built after), 64 ahead beat 32 by 2-4 ms in five
// alternating pairs (and B3 forward+backward 472-519 against 526-528 ms, B4 forward 578-589 against 619-623 ms).
constexpr int64_t kListPrefetch = 64;
// Per-primitive arrays of whole-line rows at least this large (the forward's records, the backward's sums) are
// written with streaming stores: far larger than the caches, written once and read later at random, so a write
// that first reads the line it replaces only doubles the memory traffic.
constexpr int64_t kStreamedArrayBytes = int64_t(8) << 20;
#if defined(__AVX__)
constexpr bool kCanStreamLines = true;
#else
constexpr bool kCanStreamLines = false;
#endif

// Writes one cache line (64 bytes) of `values` (64-byte aligned) to `line` with streaming stores where AVX is
// available (float rows), else with a plain copy; callers end their writes with stream_fence().
template <typename T> inline void stream_line(T* line, const T* values) {
#if defined(__AVX__)
  if constexpr (std::is_same<T, float>::value) {
    _mm256_stream_ps(line, _mm256_load_ps(values));
    _mm256_stream_ps(line + 8, _mm256_load_ps(values + 8));
    return;
  }
#endif
  std::copy(values, values + 64 / sizeof(T), line);
}
inline void stream_fence() {
#if defined(__AVX__)
  _mm_sfence();
#endif
}
constexpr int kLanes = 16;        // tiles up to 16 pixels wide run fixed 16-lane rows (one AVX-512 vector of floats)

template <typename T, typename FP>
Packed<T, FP> pack_primitives(const RasterInputs<T>& in, const TileBins& bins, int nthreads) {
  using P = Packed<T, FP>;
  using RA = RowAlpha8<T, FP>;
  P pk;
  pk.stride = P::COL + in.channels;
  // Footprints whose AVX2 row kernels read per-primitive tables (RA::kTables): wherever those kernels run (3
  // channels, rows of at most 16 lanes: the condition of render_tile and render_backward), the record grows by them.
  bool waves = false;
  if constexpr (RA::kTables) {
    static_assert(P::COL + 3 <= RA::kWaveOffset, "the wave block starts after a 3-channel record");
    waves = in.channels == 3 && in.tile <= kLanes;
    if (waves) pk.stride = RA::kWaveOffset + RA::kWaveFloats;
  }
  // Records start on cache lines: tiles read them in an order that is random at scale, and an unaligned 56-byte
  // Gaussian record would straddle two lines 7 times in 8.
  pk.stride = line_stride<T>(pk.stride);
  const int64_t nv = int64_t(bins.order.size());
  pk.data.resize(size_t(nv) * pk.stride);
  // In id order: the inputs are read as sequential streams and each record is written once at its rank (gathering
  // by rank instead read six arrays at random, several cache misses per primitive where depth order scatters them).
  // One-line float records (a plain Gaussian's: 14 floats padded to 16) of a large scene are assembled on the stack
  // and written with streaming stores, so the scattered write does not first read the line it replaces. Small
  // record sets keep ordinary stores: they stay in the caches for the tiles that read them next.
  const bool streamed = std::is_same<T, float>::value && !RA::kTables && kCanStreamLines && pk.stride == 16 &&
                        nv * 64 >= kStreamedArrayBytes;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t p = 0; p < in.n; ++p) {
    const int64_t r = bins.rank[p];
    if (r < 0) continue;
    alignas(64) T line[64 / sizeof(T)];  // streamed: the record is assembled here
    T* d = streamed ? line : pk.data.data() + r * pk.stride;
    d[P::MX] = in.means2d[2 * p];
    d[P::MY] = in.means2d[2 * p + 1];
    d[P::RX] = T(in.radii[2 * p]);
    d[P::RY] = T(in.radii[2 * p + 1]);
    d[P::OP] = in.opacities[p];
    d[P::DEP] = in.depths[p];
    for (int j = 0; j < FP::kParams; ++j) d[P::FPP + j] = in.fp_params[p * FP::kParams + j];
    const FP fp = FP::load(d + P::FPP, 0);
    d[P::LEV] = std::log(std::max(in.opacities[p] * fp.peak() * T(255), T(1)));  // opacity x the largest modulation
    d[P::RSL] = fp.row_slope();
    for (int ch = 0; ch < in.channels; ++ch) d[P::COL + ch] = in.colors[p * in.channels + ch];
    if (streamed) {
      std::fill(line + P::COL + in.channels, line + 64 / sizeof(T), T(0));  // the line's padding
      stream_line(pk.data.data() + r * pk.stride, line);
      continue;
    }
    if constexpr (RA::kTables) {
      if (waves) RA::fill_waves(fp, d + RA::kWaveOffset);
    }
  }
  if (streamed) stream_fence();
  return pk;
}

// Scratch of one thread for the forward or backward blend of a tile.
template <typename T> struct TileScratch {
  std::vector<const T*> recs;                // packed record of each of the tile's primitives (local index j)
  std::vector<int32_t> row_buf;              // row r's list: row_buf[r * count .. + row_n[r]) (local indices j)
  std::vector<uint16_t> row_mask;            // 16-lane rows: bit r of row_mask[j] set when j may reach row r
  std::vector<T> acc;                        // (C + 1) x row lanes when the channel count is not compile-time
};

#if defined(__AVX512F__)
// The rows (bit r: row y0 + r, r < th) of a tile with pixels x0 .. x0 + tw - 1 that the primitive with packed record
// `d` may reach: its box span, then RowAlpha::row_hits on all (at most 16) rows at once.
template <typename FP>
inline __mmask16 tile_row_hits16(const RasterInputs<float>& in, const float* d, int x0, int y0, int tw, int th) {
  using P = Packed<float, FP>;
  const __m512 row_centres = _mm512_add_ps(_mm512_set1_ps(float(y0) + 0.5f),
                                           _mm512_cvtepi32_ps(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)));
  const float mx = d[P::MX], my = d[P::MY];
  int r0, r1;
  pixel_span(my, d[P::RY], in.height, r0, r1);
  r0 = std::max(r0 - y0, 0);
  r1 = std::min(r1 - y0, th - 1);
  if (r1 < r0) return 0;
  const __mmask16 span = static_cast<__mmask16>((0xFFFFu >> (15 - (r1 - r0))) << r0);
  const float dx_lo = mx - (float(x0 + tw - 1) + 0.5f + 1.0f), dx_hi = mx - (float(x0) + 0.5f - 1.0f);
  return RowAlpha<float, FP>::row_hits(FP::load(d + P::FPP, 0), _mm512_sub_ps(_mm512_set1_ps(my), row_centres),
                                       d[P::LEV], d[P::RSL], dx_lo, dx_hi, span);
}

#endif

#if defined(__AVX512F__)
// Appends to `out` (from out[n]) the indices first + j of the entries j < padded whose 16-bit row mask has bit r set,
// in order, 16 entries at a time (`masks` padded with zeros to a multiple of 16); returns the new length. (One masked
// scatter per entry into the 16 row lists cost more: B3's forward blend phase 99.4-99.7 -> 89.5-94.6 ms.)
inline int append_row_list(const uint16_t* masks, int padded, int r, int32_t first, int32_t* out, int n) {
  const __m512i bit = _mm512_set1_epi32(int32_t(1) << r), step = _mm512_set1_epi32(16);
  __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                 _mm512_set1_epi32(first));
  for (int j0 = 0; j0 < padded; j0 += 16) {
    const __m512i m = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(masks + j0)));
    const __mmask16 hit = _mm512_test_epi32_mask(m, bit);
    _mm512_mask_compressstoreu_epi32(out + n, hit, idx);
    n += __builtin_popcount(hit);
    idx = _mm512_add_epi32(idx, step);
  }
  return n;
}
#endif

// Pre-pass of a tile: for every row r, the local indices j (front to back) of the primitives whose footprint may
// reach it, in sc.row_buf[r * count .. + row_n[r]); also sc.recs[j], each primitive's packed record. The forward's
// lists where the AVX-512 RGB kernel does not run (that one builds its lists chunk by chunk from tile_row_hits16
// masks, render_tile_chunked_avx512); the SIMD backward kernels take the same rows per primitive as masks
// (tile_row_hits16 with AVX-512, the AVX2 kernel's whole-row test), so both passes see the same primitives.
// kHalfRows (the AVX2 forward, whose kernel blends a row as two halves of 8 pixels): one list per half row instead,
// list 2r + h for pixels x0 + 8h .. x0 + 8h + 7 (row_n needs 2 th entries). A primitive that reaches only one half
// of a row (about a fifth of the (primitive, half row) pairs on fern and lego) is then not evaluated on the other;
// skipping it there changes nothing, since its alphas there are all 0, so the forward blends exactly the
// contributions the backward (which tests whole rows, both halves together) undoes.
template <typename T, typename FP, bool kHalfRows = false>
inline void list_tile_rows(const RasterInputs<T>& in, const TileBins& bins, const Packed<T, FP>& pk, int64_t s,
                           int count, int x0, int y0, int tw, int th, TileScratch<T>& sc, int* row_n) {
  using P = Packed<T, FP>;
  // pre-pass: which rows each primitive may touch (box span, then the conservative footprint test)
  sc.recs.resize(count);
  const int n_lists = kHalfRows ? 2 * th : th;
  if (sc.row_buf.size() < size_t(n_lists) * count) sc.row_buf.resize(size_t(n_lists) * count);
  int32_t* row_buf = sc.row_buf.data();
  for (int r = 0; r < n_lists; ++r) row_n[r] = 0;
  const T dx_lo_off = T(x0 + tw - 1) + T(0.5) + T(1), dx_hi_off = T(x0) + T(0.5) - T(1);
  // the halves' offsets: pixels x0 .. x0 + tw0 - 1 and x0 + 8 .. x0 + tw - 1 (empty when tw <= 8)
  const int tw0 = std::min(tw, 8);
  const T lo0_off = T(x0 + tw0 - 1) + T(0.5) + T(1), hi0_off = dx_hi_off;
  const T lo1_off = dx_lo_off, hi1_off = T(x0 + 8) + T(0.5) - T(1);
  for (int j = 0; j < count; ++j) {
    if (j + kListPrefetch < count) __builtin_prefetch(pk.rec(bins.ids[s + j + kListPrefetch]));
    const T* d = pk.rec(bins.ids[s + j]);
    sc.recs[j] = d;
    const T mx = d[P::MX], my = d[P::MY], ry = d[P::RY], level = d[P::LEV], slope = d[P::RSL];
    const FP fp = FP::load(d + P::FPP, 0);
    int r0, r1;
    pixel_span(my, ry, in.height, r0, r1);
    r0 = std::max(r0 - y0, 0);
    r1 = std::min(r1 - y0, th - 1);
    const T dx_lo = mx - dx_lo_off, dx_hi = mx - dx_hi_off;
    if constexpr (kHalfRows) {
      const T lo0 = mx - lo0_off, hi0 = mx - hi0_off, lo1 = mx - lo1_off, hi1 = mx - hi1_off;
      const bool second = tw > 8;
      for (int r = r0; r <= r1; ++r) {  // branch-free appends, as below
        const T dy = my - (T(y0 + r) + T(0.5));
        int* n = row_n + 2 * r;
        row_buf[size_t(2 * r) * count + n[0]] = j;
        n[0] += fp.row_may_hit(dy, level, slope, lo0, hi0) ? 1 : 0;
        row_buf[size_t(2 * r + 1) * count + n[1]] = j;
        n[1] += second && fp.row_may_hit(dy, level, slope, lo1, hi1) ? 1 : 0;
      }
      continue;
    }
    for (int r = r0; r <= r1; ++r) {  // branch-free append: the test outcome is unpredictable
      row_buf[size_t(r) * count + row_n[r]] = j;
      row_n[r] += fp.row_may_hit(my - (T(y0 + r) + T(0.5)), level, slope, dx_lo, dx_hi) ? 1 : 0;
    }
  }
}

#if defined(__AVX512F__)
// The per-primitive form of list_tile_rows for 16-lane float rows (the primitive-by-primitive backward): for the
// tile's first `count` primitives, sc.recs[j] and sc.row_mask[j], the rows j may reach (the same rows whose lists
// list_tile_rows puts j in, so the backward undoes exactly what the forward blended).
template <typename FP>
inline void mask_tile_rows(const RasterInputs<float>& in, const TileBins& bins, const Packed<float, FP>& pk, int64_t s,
                           int count, int x0, int y0, int tw, int th, TileScratch<float>& sc) {
  sc.recs.resize(count);
  sc.row_mask.resize(count);
  for (int j = 0; j < count; ++j) {
    if (j + kListPrefetch < count) {
      const int32_t ahead = bins.ids[s + j + kListPrefetch];
      __builtin_prefetch(pk.rec(ahead));
      __builtin_prefetch(&bins.prim_offset[ahead]);  // the gradient row's emission index (grad_rows.h)
    }
    const float* d = pk.rec(bins.ids[s + j]);
    sc.recs[j] = d;
    sc.row_mask[j] = tile_row_hits16<FP>(in, d, x0, y0, tw, th);
  }
}
#endif

// Writes n pixels of row y starting at x0 from a float RGB row kernel's lanes: transmittance t, accumulated colours
// c0..c2 and depth, last contributor's position in bins.ids (-1 none); the background shows through by t.
inline void store_rgb_row(const RasterInputs<float>& in, const TileBins& bins, const RasterOutputs<float>& out, int y,
                          int x0, int n, const float* t_l, const float* c0, const float* c1, const float* c2,
                          const float* dd, const int32_t* l_l) {
  const float* bg = in.background;
  for (int x = 0; x < n; ++x) {
    const int64_t pix = int64_t(y) * in.width + (x0 + x);
    const float t = t_l[x];
    out.colors[pix * 3] = c0[x] + (bg ? t * bg[0] : 0.0f);
    out.colors[pix * 3 + 1] = c1[x] + (bg ? t * bg[1] : 0.0f);
    out.colors[pix * 3 + 2] = c2[x] + (bg ? t * bg[2] : 0.0f);
    out.alphas[pix] = 1.0f - t;
    out.depths[pix] = dd[x];
    out.trans[pix] = t;
    out.last_pos[pix] = l_l[x];
    out.last_id[pix] = l_l[x] >= 0 ? bins.order[bins.ids[l_l[x]]] : -1;
  }
}

// A tile's first pixel (x0, y0) and size (tw, th; smaller at the image's right and bottom edges).
struct TileRect {
  int x0, y0, tw, th;
};
template <typename T> inline TileRect tile_rect(const RasterInputs<T>& in, int64_t tile_index, int tiles_x) {
  const int x0 = int(tile_index % tiles_x) * in.tile, y0 = int(tile_index / tiles_x) * in.tile;
  return {x0, y0, std::min(in.tile, in.width - x0), std::min(in.tile, in.height - y0)};
}

}  // namespace sf_cpu
