// CPU forward blend: one tile at a time, rows of pixels as vector lanes, primitives front to back.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../sf_math.h"
#include "binning.h"

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
// tile): mean2d, radii, opacity, depth, footprint params, colours.
template <typename T, typename FP> struct Packed {
  static constexpr int MX = 0, MY = 1, RX = 2, RY = 3, OP = 4, DEP = 5, FPP = 6, COL = 6 + FP::kParams;
  int stride;
  std::vector<T> data;
  const T* rec(int64_t r) const { return data.data() + r * stride; }
};

template <typename T, typename FP>
Packed<T, FP> pack_primitives(const RasterInputs<T>& in, const TileBins& bins, int nthreads) {
  using P = Packed<T, FP>;
  P pk;
  pk.stride = P::COL + in.channels;
  const int64_t nv = int64_t(bins.order.size());
  pk.data.resize(size_t(nv) * pk.stride);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t r = 0; r < nv; ++r) {
    const int64_t p = bins.order[r];
    T* d = pk.data.data() + r * pk.stride;
    d[P::MX] = in.means2d[2 * p];
    d[P::MY] = in.means2d[2 * p + 1];
    d[P::RX] = T(in.radii[2 * p]);
    d[P::RY] = T(in.radii[2 * p + 1]);
    d[P::OP] = in.opacities[p];
    d[P::DEP] = in.depths[p];
    for (int j = 0; j < FP::kParams; ++j) d[P::FPP + j] = in.fp_params[p * FP::kParams + j];
    for (int ch = 0; ch < in.channels; ++ch) d[P::COL + ch] = in.colors[p * in.channels + ch];
  }
  return pk;
}

constexpr int64_t kPrefetch = 8;  // primitives ahead to prefetch in the blend loops

// Blend one tile. Scratch vectors belong to the calling thread.
template <typename T, typename FP>
inline int64_t render_tile(const RasterInputs<T>& in, const TileBins& bins, const Packed<T, FP>& pk, int64_t tile_index, int tiles_x,
                           std::vector<T>& acc, std::vector<T>& trans, std::vector<T>& alive,
                           std::vector<int32_t>& last, std::vector<T>& wrow, const RasterOutputs<T>& out) {
  const int ts = in.tile, C = in.channels;
  const int x0 = int(tile_index % tiles_x) * ts, y0 = int(tile_index / tiles_x) * ts;
  const int tw = std::min(ts, in.width - x0), th = std::min(ts, in.height - y0);
  const int np = ts * ts;
  acc.assign(size_t(C + 1) * np, T(0));
  trans.assign(np, T(1));
  alive.assign(np, T(0));
  last.assign(np, -1);
  std::vector<int> row_alive(th, tw);
  for (int r = 0; r < th; ++r)
    for (int x = 0; x < tw; ++x) alive[r * ts + x] = T(1);
  int tile_alive = tw * th;
  int64_t evals = 0;
  T px[64];
  for (int x = 0; x < ts; ++x) px[x] = T(x0 + x) + T(0.5);
  const int64_t s = bins.tile_start[tile_index], e = bins.tile_start[tile_index + 1];
  for (int64_t k = s; k < e && tile_alive > 0; ++k) {
    using P = Packed<T, FP>;
    if (k + kPrefetch < e) {  // records are scattered in memory: fetch a few primitives ahead
      const T* ahead = pk.rec(bins.ids[k + kPrefetch]);
      __builtin_prefetch(ahead);
      __builtin_prefetch(ahead + pk.stride - 1);
    }
    const T* d = pk.rec(bins.ids[k]);
    const T mx = d[P::MX], my = d[P::MY], rx = d[P::RX], ry = d[P::RY], op = d[P::OP], dep = d[P::DEP];
    const FP fp = FP::load(d + P::FPP, 0);
    const T* col = d + P::COL;
    int r0, r1;
    pixel_span(my, ry, in.height, r0, r1);
    r0 = std::max(r0 - y0, 0);
    r1 = std::min(r1 - y0, th - 1);
    const T level = std::log(std::max(op * T(255), T(1)));
    const T dx_lo = mx - (T(x0 + tw - 1) + T(0.5)) - T(1), dx_hi = mx - (T(x0) + T(0.5)) + T(1);
    for (int r = r0; r <= r1; ++r) {
      if (row_alive[r] == 0) continue;
      const T dy = my - (T(y0 + r) + T(0.5));
      if (!fp.row_may_hit(dy, level, dx_lo, dx_hi)) continue;  // the footprint misses this row of the tile
      T* tr = &trans[r * ts];
      T* al = &alive[r * ts];
      int32_t* ls = &last[r * ts];
      T* w = wrow.data();
      int stops = 0;
      const int32_t kk = static_cast<int32_t>(k);
#pragma omp simd reduction(+ : stops)
      for (int x = 0; x < tw; ++x) {
        // Alive pixels keep T > eps, so `next <= eps` implies a contributing alpha: one select per condition.
        const T dx = mx - px[x];
        T alpha = sf::blend_alpha(op, fp.sigma(dx, dy));
        alpha = std::abs(dx) <= rx ? alpha : T(0);
        alpha = al[x] != T(0) ? alpha : T(0);
        const T t = tr[x];
        const T next = t * (T(1) - alpha);
        const bool stop = next <= T(sf::TRANSMITTANCE_EPS);
        const T wx = stop ? T(0) : alpha * t;
        w[x] = wx;
        tr[x] = stop ? t : next;
        ls[x] = wx > T(0) ? kk : ls[x];
        al[x] = stop ? T(0) : al[x];
        stops += stop ? 1 : 0;
      }
      evals += tw;  // lanes of rows that were evaluated
      for (int ch = 0; ch < C; ++ch) {
        T* a = &acc[size_t(ch) * np + r * ts];
        const T cv = col[ch];
#pragma omp simd
        for (int x = 0; x < tw; ++x) a[x] += w[x] * cv;
      }
      T* ad = &acc[size_t(C) * np + r * ts];
#pragma omp simd
      for (int x = 0; x < tw; ++x) ad[x] += w[x] * dep;
      row_alive[r] -= stops;
      tile_alive -= stops;
    }
  }
  for (int r = 0; r < th; ++r)
    for (int x = 0; x < tw; ++x) {
      const int i = r * ts + x;
      const int64_t pix = int64_t(y0 + r) * in.width + (x0 + x);
      const T t = trans[i];
      for (int ch = 0; ch < C; ++ch)
        out.colors[pix * C + ch] = acc[size_t(ch) * np + i] + (in.background ? t * in.background[ch] : T(0));
      out.alphas[pix] = T(1) - t;
      out.depths[pix] = acc[size_t(C) * np + i];
      out.trans[pix] = t;
      out.last_pos[pix] = last[i];
      out.last_id[pix] = last[i] >= 0 ? bins.order[bins.ids[last[i]]] : -1;
    }
  return evals;
}

template <typename T, typename FP>
void render_forward(const RasterInputs<T>& in, const TileBins& bins, int nthreads, const RasterOutputs<T>& out) {
  const int tiles_x = (in.width + in.tile - 1) / in.tile, tiles_y = (in.height + in.tile - 1) / in.tile;
  const int64_t n_tiles = int64_t(tiles_x) * tiles_y;
  int64_t evals = 0;
  const Packed<T, FP> pk = pack_primitives<T, FP>(in, bins, nthreads);
#pragma omp parallel num_threads(nthreads) reduction(+ : evals)
  {
    std::vector<T> acc, trans, alive, wrow(in.tile);
    std::vector<int32_t> last;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < n_tiles; ++t)
      evals += render_tile<T, FP>(in, bins, pk, t, tiles_x, acc, trans, alive, last, wrow, out);
  }
  if (out.n_evals) *out.n_evals = evals;
}

}  // namespace sf_cpu
