# Dot-product / matmul kernels per ISA with runtime dispatch (target realm_tensor_kernels).
# Included by src/tensor/CMakeLists.txt. Each ISA's code is one .cc compiled with its own -m flags;
# the rest of the program stays portable.
set(_kdir ${CMAKE_CURRENT_LIST_DIR})
set(_ksrc ${_kdir}/cpu_features.cc ${_kdir}/kernels.cc ${_kdir}/kernels_scalar.cc)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set(REALM_KERNELS_X86 ON)
  list(APPEND _ksrc ${_kdir}/kernels_avx2.cc ${_kdir}/kernels_avx512.cc)
  set_source_files_properties(${_kdir}/kernels_avx2.cc PROPERTIES COMPILE_OPTIONS
                              "-mavx2;-mfma;-mf16c")
  set_source_files_properties(${_kdir}/kernels_avx512.cc PROPERTIES COMPILE_OPTIONS
                              "-mavx2;-mfma;-mf16c;-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni")
  # GCC 12 warns falsely inside its own avx512fintrin.h about _mm512_undefined_* values, and
  # about the (written before read) stack scratch of the legacy-type matmul.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    set_property(SOURCE ${_kdir}/kernels_avx2.cc ${_kdir}/kernels_avx512.cc APPEND PROPERTY
                 COMPILE_OPTIONS "-Wno-uninitialized;-Wno-maybe-uninitialized")
  endif()
else()
  list(APPEND _ksrc ${_kdir}/kernels_nox86.cc)
endif()
add_library(realm_tensor_kernels ${_ksrc})
if(TARGET realm_tensor)
  target_link_libraries(realm_tensor_kernels PUBLIC realm_tensor)
else()
  target_link_libraries(realm_tensor_kernels PUBLIC realm_gguf)
endif()
if(REALM_KERNELS_X86)
  target_compile_definitions(realm_tensor_kernels PRIVATE REALM_KERNELS_X86=1)
endif()
# The batch-independence contract and the scalar/SIMD agreement need every float expression
# evaluated as written: no fused multiply-add the source does not ask for.
target_compile_options(realm_tensor_kernels PRIVATE -ffp-contract=off)

if(TARGET realm_tensor)
  realm_test(tensor_kernels_test SOURCES ${_kdir}/kernels_test.cc
             LIBS realm_tensor_kernels realm_tensor)
  # The start-up decision under each forced value of REALM_ISA (and an unknown one).
  foreach(_isa scalar avx2 avx512 bogus)
    add_test(NAME tensor_kernels_forced_${_isa}
             COMMAND tensor_kernels_test --gtest_filter=Isa.DetectionIsConsistentAndTheActivePathWorks)
    set_tests_properties(tensor_kernels_forced_${_isa} PROPERTIES ENVIRONMENT "REALM_ISA=${_isa}")
  endforeach()
endif()

find_package(benchmark QUIET)
if(benchmark_FOUND AND NOT REALM_LOW_LAYERS_ONLY)
  add_executable(bench_dot ${_kdir}/bench_dot.cc)
  target_link_libraries(bench_dot PRIVATE realm_tensor_kernels realm_tensor benchmark::benchmark)
endif()
