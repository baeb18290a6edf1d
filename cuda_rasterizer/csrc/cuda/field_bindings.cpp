// Python bindings of the CUDA radiance-field kernels (module splatforge_cuda_field_smXX).
#include "field_api.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("hash_encode_fwd", &sf_cuda_field::hash_encode_fwd);
  m.def("hash_encode_bwd", &sf_cuda_field::hash_encode_bwd);
  m.def("march", &sf_cuda_field::march);
  m.def("composite_fwd", &sf_cuda_field::composite_fwd);
  m.def("composite_bwd", &sf_cuda_field::composite_bwd);
}
