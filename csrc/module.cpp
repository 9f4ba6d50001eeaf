// The importable module mlrank._C, a pybind11 module. Importing it loads the shared library,
// whose static initialisers register the ops with the PyTorch dispatcher (torch.ops.mlrank.*):
// the ops live there, not here, so that autograd, autocast, torch.compile and every backend
// reach them (docs/architecture.md). The module itself holds one function, build_info(), the
// facts of this build that a bug report needs (python -m mlrank.info). Only pybind11 and two
// small headers are included, so this file compiles in seconds.
#include <pybind11/pybind11.h>
#include <torch/version.h>

#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION
#endif

namespace py = pybind11;

#define MLRANK_STRINGIFY_(x) #x
#define MLRANK_STRINGIFY(x) MLRANK_STRINGIFY_(x)

namespace {

py::dict build_info() {
  py::dict info;
  info["torch_version"] = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                          std::to_string(TORCH_VERSION_PATCH);
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
  info["compiler"] = std::string("msvc ") + std::to_string(_MSC_VER);
#else
  info["compiler"] = "unknown";
#endif
  info["cxx_standard"] = static_cast<long>(__cplusplus);
  info["cpu_kernels"] = true;  // the C++ kernels and the ATen implementation are in every build
  info["aten_implementation"] = true;
#ifdef _OPENMP
  info["openmp"] = static_cast<long>(_OPENMP);  // the specification's date, yyyymm
  info["openmp_max_threads"] = omp_get_max_threads();
#else
  info["openmp"] = py::none();
  info["openmp_max_threads"] = py::none();
#endif
#ifdef WITH_CUDA
  info["cuda_kernels"] = true;
  info["cuda_runtime"] = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
#ifdef MLRANK_CUDA_ARCHS
  // The architectures compiled for, as setup.py passes them: "8.0;9.0+PTX" arrives as 80_90PTX.
  info["cuda_architectures"] = MLRANK_STRINGIFY(MLRANK_CUDA_ARCHS);
#else
  info["cuda_architectures"] = py::none();  // a build that did not say (CMake without TORCH_CUDA_ARCH_LIST)
#endif
#else
  info["cuda_kernels"] = false;
  info["cuda_runtime"] = py::none();
  info["cuda_architectures"] = py::none();
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "mlrank's compiled library: the ops are registered with torch's dispatcher (torch.ops.mlrank.*)";
  m.def("build_info", &build_info,
        "The facts of this build: the torch it was compiled against, the compiler, OpenMP, and the CUDA "
        "kernels (runtime version and architectures) where built");
}
