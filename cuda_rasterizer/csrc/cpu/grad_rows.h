// Where the backward's per-(tile, primitive) gradient rows go. The tile kernels produce them in tile order, the
// per-primitive sums consume them in emission order (each primitive's rows, one per tile of its rectangle). Rows are
// stored at their emission index (emission_of), so the sums read one forward stream; in a large scene the
// kernels' scattered writes are whole cache lines with streaming stores (no read of the line they replace). Only rows
// with a contribution are written, each flagged: most intersections of a deep scene lie behind every pixel's last
// contributor (83% of B3's), and neither their zeros nor their reads cost anything. (Rows in tile order made the sums
// a random gather, ~20 ns per intersection at 1M primitives.)
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "binning.h"
#include "buffer_pool.h"
#include "tile_rows.h"

namespace sf_cpu {

template <typename T> struct GradRows {
  T* base = nullptr;
  int64_t stride = 0;        // values between rows (whole cache lines when streamed)
  uint8_t* written = nullptr;  // written[e] = 1 once row e holds a contribution (zeroed before the tiles)
  bool streamed = false;

  // Whether rows of `row` values, `rows` of them, are line-padded and streamed: a large float array.
  static bool streams(int row, int64_t rows) {
    return std::is_same<T, float>::value && kCanStreamLines &&
           int64_t(line_stride<T>(row)) * int64_t(sizeof(T)) * rows >= kStreamedArrayBytes;
  }
  static int stride_for(int row, int64_t rows) { return streams(row, rows) ? line_stride<T>(row) : row; }

  // Row e, marked written: the caller writes all its values in place.
  T* row_at(int64_t e) const {
    written[e] = 1;
    return base + e * stride;
  }
  // Writes the first `row` values of `values` (64-byte aligned, at least `stride` values when streamed) as row e;
  // callers finish with stream_fence() before the rows are read.
  void store(int64_t e, const T* values, int row) const {
    T* dst = base + e * stride;
    if (streamed) {
      for (int64_t o = 0; o < stride; o += 64 / int64_t(sizeof(T))) stream_line(dst + o, values + o);
    } else {
      std::copy(values, values + row, dst);
    }
    written[e] = 1;
  }
};

// The emission index of the intersection at position `pos` of bins.ids, in tile (tx, ty), whose primitive's packed
// record is `d`: its rectangle from the record (the same spans bin_tiles computed, from the same values), then
// prim_offset + (ty - y0) * width + (tx - x0), bin_tiles' row-by-row emission order.
template <typename T, typename FP>
inline int64_t emission_of(const RasterInputs<T>& in, const TileBins& bins, const T* d, int64_t pos, int tx, int ty,
                           const PixelToTile& to_tile) {
  using P = Packed<T, FP>;
  TileSpan span;
  span.set(d[P::MX], d[P::MY], static_cast<int32_t>(d[P::RX]), static_cast<int32_t>(d[P::RY]), in.width, in.height,
           to_tile);
  return bins.prim_offset[bins.ids[pos]] + int64_t(ty - span.y0) * span.width() + (tx - span.x0);
}

}  // namespace sf_cpu
