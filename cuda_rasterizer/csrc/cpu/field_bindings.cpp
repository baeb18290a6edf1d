// Python bindings of the CPU radiance-field kernels (module splatforge_cpu_field).
#include "field_api.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("hash_encode_fwd", &sf_cpu_field::hash_encode_fwd);
  m.def("hash_encode_bwd", &sf_cpu_field::hash_encode_bwd);
  m.def("march", &sf_cpu_field::march);
  m.def("composite_fwd", &sf_cpu_field::composite_fwd);
  m.def("composite_bwd", &sf_cpu_field::composite_bwd);
}
