// CPU forward blend: one tile at a time, rows of pixels as vector lanes, primitives front to back.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../sf_math.h"
#include "binning.h"
#include "blend_row_avx2.h"
#include "row_alpha.h"
#include "tile_rows.h"

namespace sf_cpu {

#if defined(__AVX512F__)
// What a 16-pixel row of a tile carries while it blends (registers inside blend_row_steps_avx512): transmittance,
// colours, depth, last contributor and the lanes still alive.
struct RowBlend16 {
  __m512 tr, acc0, acc1, acc2, accd;
  __m512i last;
  __mmask16 alive;
  void start(int tw) {
    tr = _mm512_set1_ps(1.0f);
    acc0 = acc1 = acc2 = accd = _mm512_setzero_ps();
    last = _mm512_set1_epi32(-1);
    alive = static_cast<__mmask16>((1u << tw) - 1u);
  }
  void store(const RasterInputs<float>& in, const TileBins& bins, const RasterOutputs<float>& out, int y, int x0,
             int tw) const {
    alignas(64) float t_l[16], c0[16], c1[16], c2[16], dd[16];
    alignas(64) int32_t l_l[16];
    _mm512_store_ps(t_l, tr);
    _mm512_store_ps(c0, acc0);
    _mm512_store_ps(c1, acc1);
    _mm512_store_ps(c2, acc2);
    _mm512_store_ps(dd, accd);
    _mm512_store_si512(l_l, last);
    store_rgb_row(in, bins, out, y, x0, tw, t_l, c0, c1, c2, dd, l_l);
  }
};

// Primitives per blend batch: their alphas first (independent of each other, so the core overlaps the long exp
// chains), then the blend, whose only loop-carried chain is transmittance -> stop -> alive. A row's batches start at
// multiples of kBlendBatch in its list, however the list arrives (the chunked tiles below keep that).
constexpr int kBlendBatch = 8;

// Blends the next n_list primitives of a 16-pixel row (float, 3 channels, a footprint with a RowAlpha kernel) into
// `row`, front to back, stopping once every pixel is saturated. Same arithmetic as the generic row loop.
template <typename FP>
inline void blend_row_steps_avx512(const int32_t* list, int n_list, const float* const* recs, int64_t s, int x0, int y,
                                   int tw, RowBlend16& row, int64_t& evals) {
  using P = Packed<float, FP>;
  const __m512 px = _mm512_add_ps(_mm512_set1_ps(float(x0) + 0.5f),
                                  _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  const __m512 one = _mm512_set1_ps(1.0f), eps = _mm512_set1_ps(float(sf::TRANSMITTANCE_EPS));
  __m512 tr = row.tr, acc0 = row.acc0, acc1 = row.acc1, acc2 = row.acc2, accd = row.accd;
  __m512i last = row.last;
  __mmask16 alive = row.alive;
  const float dy_off = float(y) + 0.5f;
  constexpr int kBatch = kBlendBatch;
  alignas(64) float alphas[kBatch][16];
  for (int b0 = 0; b0 < n_list && alive != 0; b0 += kBatch) {
    const int nb = std::min(kBatch, n_list - b0);
    auto alpha_of = [&](int i) {
      const float* d = recs[list[b0 + i]];
      const FP fp = FP::load(d + P::FPP, 0);
      const __m512 dx = _mm512_sub_ps(_mm512_set1_ps(d[P::MX]), px);
      __m512 ex;
      return RowAlpha<float, FP>::eval(fp, dx, d[P::MY] - dy_off, d[P::OP], d[P::RX], ex);
    };
    int i0 = 0;
    for (; i0 + 1 < nb; i0 += 2) {  // two at a time: side by side, the two exp chains interleave (~5%)
      const __m512 a0 = alpha_of(i0), a1 = alpha_of(i0 + 1);
      _mm512_store_ps(alphas[i0], a0);
      _mm512_store_ps(alphas[i0 + 1], a1);
    }
    if (i0 < nb) _mm512_store_ps(alphas[i0], alpha_of(i0));
    // Fast path: when no alive pixel can reach the stop threshold within this batch (transmittance only falls, so
    // checking it after the whole batch suffices), the batch's transmittances are prefix products independent of
    // each other, and the blend has no loop-carried compare -> mask -> select chain per primitive.
    __m512 om_prefix[kBatch];
    __m512 prod = one;
    for (int i = 0; i < nb; ++i) {
      om_prefix[i] = prod;
      prod = _mm512_mul_ps(prod, _mm512_sub_ps(one, _mm512_maskz_load_ps(alive, alphas[i])));
    }
    const __m512 tr_end = _mm512_mul_ps(tr, prod);
    if (_mm512_mask_cmp_ps_mask(alive, tr_end, eps, _CMP_LE_OQ) == 0) {
      for (int i = 0; i < nb; ++i) {
        const int j = list[b0 + i];
        const float* d = recs[j];
        const __m512 alpha = _mm512_maskz_load_ps(alive, alphas[i]);
        const __m512 w = _mm512_mul_ps(alpha, _mm512_mul_ps(tr, om_prefix[i]));
        last = _mm512_mask_mov_epi32(last, _mm512_cmp_ps_mask(alpha, _mm512_setzero_ps(), _CMP_GT_OQ),
                                     _mm512_set1_epi32(int32_t(s + j)));
        acc0 = _mm512_fmadd_ps(w, _mm512_set1_ps(d[P::COL]), acc0);
        acc1 = _mm512_fmadd_ps(w, _mm512_set1_ps(d[P::COL + 1]), acc1);
        acc2 = _mm512_fmadd_ps(w, _mm512_set1_ps(d[P::COL + 2]), acc2);
        accd = _mm512_fmadd_ps(w, _mm512_set1_ps(d[P::DEP]), accd);
      }
      tr = tr_end;
      evals += int64_t(nb) * tw;
      continue;
    }
    for (int i = 0; i < nb; ++i) {  // exact per-primitive steps: some pixel stops within this batch
      const int j = list[b0 + i];
      const float* d = recs[j];
      const __m512 alpha = _mm512_maskz_load_ps(alive, alphas[i]);
      const __m512 next = _mm512_mul_ps(tr, _mm512_sub_ps(one, alpha));
      const __mmask16 stop = _mm512_mask_cmp_ps_mask(alive, next, eps, _CMP_LE_OQ);
      const __mmask16 contrib = _kandn_mask16(stop, _mm512_cmp_ps_mask(alpha, _mm512_setzero_ps(), _CMP_GT_OQ));
      const __m512 w = _mm512_maskz_mul_ps(contrib, alpha, tr);
      tr = _mm512_mask_mov_ps(tr, contrib, next);
      last = _mm512_mask_mov_epi32(last, contrib, _mm512_set1_epi32(int32_t(s + j)));
      acc0 = _mm512_fmadd_ps(w, _mm512_set1_ps(d[P::COL]), acc0);
      acc1 = _mm512_fmadd_ps(w, _mm512_set1_ps(d[P::COL + 1]), acc1);
      acc2 = _mm512_fmadd_ps(w, _mm512_set1_ps(d[P::COL + 2]), acc2);
      accd = _mm512_fmadd_ps(w, _mm512_set1_ps(d[P::DEP]), accd);
      evals += tw;
      alive = _kandn_mask16(stop, alive);
      if (alive == 0) break;  // every pixel of this row is saturated
    }
  }
  row.tr = tr, row.acc0 = acc0, row.acc1 = acc1, row.acc2 = acc2, row.accd = accd, row.last = last, row.alive = alive;
}

// A tile of 16-pixel rows (float, 3 channels, a RowAlpha footprint), its primitives taken in chunks of kTileChunk:
// each chunk's row masks (which reads the chunk's records), its row lists, and every still-alive row blended through
// them. The tile stops reading primitives once all its rows are saturated: in a deep scene most of a tile's
// primitives lie behind that point (83% of B3's intersections), and building their row lists (a random record read
// each) was a quarter of the forward. Each row's list is the same as one pass over all primitives gives, and its
// blend batches start at the same places (a chunk blends whole batches; the rest waits for the next chunk), so the
// image is bit for bit the unchunked one.
constexpr int kTileChunk = 256;
template <typename FP>
inline int64_t render_tile_chunked_avx512(const RasterInputs<float>& in, const TileBins& bins,
                                          const Packed<float, FP>& pk, int64_t s, int count, int x0, int y0, int tw,
                                          int th, TileScratch<float>& sc, const RasterOutputs<float>& out) {
  constexpr int kListCap = kTileChunk + kBlendBatch;  // a chunk's entries plus the previous chunk's partial batch
  sc.recs.resize(count);
  sc.row_mask.resize(kTileChunk);
  if (sc.row_buf.size() < size_t(16) * kListCap) sc.row_buf.resize(size_t(16) * kListCap);
  RowBlend16 rows[16];
  int pending[16];
  for (int r = 0; r < th; ++r) {
    rows[r].start(tw);
    pending[r] = 0;
  }
  uint32_t open_rows = (1u << th) - 1u;
  int64_t evals = 0;
  for (int c0 = 0; c0 < count && open_rows != 0; c0 += kTileChunk) {
    const int c1 = std::min(count, c0 + kTileChunk), n = c1 - c0;
    const bool final_chunk = c1 == count;
    for (int j = c0; j < c1; ++j) {
      if (j + kListPrefetch < count) __builtin_prefetch(pk.rec(bins.ids[s + j + kListPrefetch]));
      const float* d = pk.rec(bins.ids[s + j]);
      sc.recs[j] = d;
      sc.row_mask[j - c0] = tile_row_hits16<FP>(in, d, x0, y0, tw, th);
    }
    const int padded = (n + 15) & ~15;
    for (int j = n; j < padded; ++j) sc.row_mask[j] = 0;
    for (uint32_t m = open_rows; m != 0; m &= m - 1) {
      const int r = __builtin_ctz(m);
      int32_t* list = sc.row_buf.data() + size_t(r) * kListCap;  // starts with the row's pending entries
      const int nr = append_row_list(sc.row_mask.data(), padded, r, c0, list, pending[r]);
      const int blend_n = final_chunk ? nr : nr - nr % kBlendBatch;
      blend_row_steps_avx512<FP>(list, blend_n, sc.recs.data(), s, x0, y0 + r, tw, rows[r], evals);
      if (rows[r].alive == 0) {
        open_rows &= ~(1u << r);
        continue;
      }
      pending[r] = nr - blend_n;
      for (int i = 0; i < pending[r]; ++i) list[i] = list[blend_n + i];
    }
  }
  for (int r = 0; r < th; ++r) rows[r].store(in, bins, out, y0 + r, x0, tw);
  return evals;
}
#endif

// Blend one tile, row by row. A pre-pass lists, for every row, the primitives (front to back) whose footprint may
// reach it; each row then blends its list with the row's transmittance, colour, alive and last-contributor lanes
// kept local (registers when LW and CC are compile-time), and stops as soon as all its pixels are saturated.
// LW > 0: rows of exactly LW lanes (lanes past the tile width are dead); LW == 0: rows of the tile width.
// CC > 0: compile-time channel count; CC == 0: in.channels.
template <typename T, typename FP, int LW, int CC>
inline int64_t render_tile(const RasterInputs<T>& in, const TileBins& bins, const Packed<T, FP>& pk, int64_t tile_index,
                           int tiles_x, TileScratch<T>& sc, const RasterOutputs<T>& out) {
  using P = Packed<T, FP>;
  constexpr int kMaxLanes = LW > 0 ? LW : 64;
  constexpr int kAccSize = CC > 0 ? (CC + 1) * kMaxLanes : 1;
  const int ts = in.tile, C = CC > 0 ? CC : in.channels;
  const int x0 = int(tile_index % tiles_x) * ts, y0 = int(tile_index / tiles_x) * ts;
  const int tw = std::min(ts, in.width - x0), th = std::min(ts, in.height - y0);
  const int nl = LW > 0 ? LW : tw;
  const int64_t s = bins.tile_start[tile_index], e = bins.tile_start[tile_index + 1];
  const int count = int(e - s);
#if defined(SF_ROWS_AVX2)
  constexpr bool kHalves = RowAlpha8<T, FP>::kVector && LW == 16 && CC == 3;  // blend_half_row_avx2's lists
#else
  constexpr bool kHalves = false;
#endif
#if defined(__AVX512F__)
  if constexpr (RowAlpha<T, FP>::kVector && LW == 16 && CC == 3)
    return render_tile_chunked_avx512<FP>(in, bins, pk, s, count, x0, y0, tw, th, sc, out);
#endif
  int row_n[128];
  list_tile_rows<T, FP, kHalves>(in, bins, pk, s, count, x0, y0, tw, th, sc, row_n);
  const int32_t* row_buf = sc.row_buf.data();
  if (CC == 0) sc.acc.resize(size_t(C + 1) * nl);
  alignas(64) T px[kMaxLanes];
  for (int x = 0; x < nl; ++x) px[x] = T(x0 + x) + T(0.5);
  int64_t evals = 0;
  for (int r = 0; r < th; ++r) {
#if defined(SF_ROWS_AVX2)
    if constexpr (kHalves) {
      for (int h = 0; h < 2 && 8 * h < tw; ++h)
        evals += blend_half_row_avx2<FP>(in, bins, row_buf + size_t(2 * r + h) * count, row_n[2 * r + h],
                                         sc.recs.data(), s, x0 + 8 * h, y0 + r, std::min(8, tw - 8 * h), out);
      continue;
    }
#endif
    alignas(64) T tr[kMaxLanes], al[kMaxLanes];
    alignas(64) int32_t ls[kMaxLanes];
    alignas(64) T acc_local[kAccSize];
    alignas(64) T w[kMaxLanes];  // blend weights (runtime channel count only)
    T* acc = CC > 0 ? acc_local : sc.acc.data();
    for (int x = 0; x < nl; ++x) {
      tr[x] = T(1);
      al[x] = x < tw ? T(1) : T(0);
      ls[x] = -1;
    }
    for (int i = 0; i < (C + 1) * nl; ++i) acc[i] = T(0);
    int row_alive = tw;
    const T dy_off = T(y0 + r) + T(0.5);
    const int32_t* list = row_buf + size_t(r) * count;
    const int n_list = row_n[r];
    for (int li = 0; li < n_list; ++li) {
      const int j = list[li];
      const T* d = sc.recs[j];
      const T mx = d[P::MX], rx = d[P::RX], op = d[P::OP], dep = d[P::DEP];
      const T dy = d[P::MY] - dy_off;
      const FP fp = FP::load(d + P::FPP, 0);
      const T* col = d + P::COL;
      const int32_t kk = static_cast<int32_t>(s + j);
      int stops = 0;
#pragma omp simd reduction(+ : stops)
      for (int x = 0; x < nl; ++x) {
        // Alive pixels keep T > eps, so `next <= eps` implies a contributing alpha: one select per condition.
        const T dx = mx - px[x];
        T fac;
        T alpha = sf::footprint_alpha(fp, op, dx, dy, fac);
        alpha = std::abs(dx) <= rx ? alpha : T(0);
        alpha = al[x] != T(0) ? alpha : T(0);
        const T t = tr[x];
        const T next = t * (T(1) - alpha);
        const bool stop = next <= T(sf::TRANSMITTANCE_EPS);
        const T wx = stop ? T(0) : alpha * t;
        tr[x] = stop ? t : next;
        ls[x] = wx > T(0) ? kk : ls[x];
        al[x] = stop ? T(0) : al[x];
        stops += stop ? 1 : 0;
        if constexpr (CC > 0) {  // unrolled: the row's colour lanes stay in registers
          for (int ch = 0; ch < CC; ++ch) acc[ch * nl + x] += wx * col[ch];
          acc[CC * nl + x] += wx * dep;
        } else {
          w[x] = wx;
        }
      }
      if constexpr (CC == 0) {  // any channel count: one vector loop per channel
        for (int ch = 0; ch < C; ++ch) {
          T* a = acc + ch * nl;
          const T cv = col[ch];
#pragma omp simd
          for (int x = 0; x < nl; ++x) a[x] += w[x] * cv;
        }
        T* a = acc + C * nl;
#pragma omp simd
        for (int x = 0; x < nl; ++x) a[x] += w[x] * dep;
      }
      evals += tw;  // real pixels of the rows that were evaluated
      row_alive -= stops;
      if (row_alive == 0) break;  // every pixel of this row is saturated
    }
    for (int x = 0; x < tw; ++x) {
      const int64_t pix = int64_t(y0 + r) * in.width + (x0 + x);
      const T t = tr[x];
      for (int ch = 0; ch < C; ++ch) out.colors[pix * C + ch] = acc[ch * nl + x] + (in.background ? t * in.background[ch] : T(0));
      out.alphas[pix] = T(1) - t;
      out.depths[pix] = acc[C * nl + x];
      out.trans[pix] = t;
      out.last_pos[pix] = ls[x];
      out.last_id[pix] = ls[x] >= 0 ? bins.order[bins.ids[ls[x]]] : -1;
    }
  }
  return evals;
}

template <typename T, typename FP>
void render_forward(const RasterInputs<T>& in, const TileBins& bins, const Packed<T, FP>& pk, int nthreads,
                    const RasterOutputs<T>& out) {
  const int tiles_x = (in.width + in.tile - 1) / in.tile, tiles_y = (in.height + in.tile - 1) / in.tile;
  const int64_t n_tiles = int64_t(tiles_x) * tiles_y;
  int64_t evals = 0;
  const bool fixed = in.tile <= kLanes, rgb = in.channels == 3;
#pragma omp parallel num_threads(nthreads) reduction(+ : evals)
  {
    TileScratch<T> sc;
    // whole rows of tiles per task: neighbouring tiles share the cache lines at their borders in every output
    // row, so two threads working on adjacent tiles would keep stealing those lines from each other
#pragma omp for schedule(dynamic, 1)
    for (int64_t ty = 0; ty < tiles_y; ++ty)
      for (int64_t t = ty * tiles_x; t < (ty + 1) * tiles_x; ++t) {
        if (fixed && rgb)
          evals += render_tile<T, FP, kLanes, 3>(in, bins, pk, t, tiles_x, sc, out);
        else if (fixed)
          evals += render_tile<T, FP, kLanes, 0>(in, bins, pk, t, tiles_x, sc, out);
        else
          evals += render_tile<T, FP, 0, 0>(in, bins, pk, t, tiles_x, sc, out);
      }
  }
  if (out.n_evals) *out.n_evals = evals;
}

}  // namespace sf_cpu
