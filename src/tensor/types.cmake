# Type table, reference quantize/dequantize, llama.cpp-compatible model quantization, synthetic
# models (target realm_tensor). Included by src/tensor/CMakeLists.txt.
add_library(realm_tensor type_table.cc quantize.cc quantize_model.cc synth_model.cc)
target_link_libraries(realm_tensor PUBLIC realm_gguf)
# Exactness with llama.cpp's reference quantizers needs every float expression evaluated as
# written (no fused multiply-add).
set_source_files_properties(quantize.cc quantize_model.cc PROPERTIES COMPILE_OPTIONS
                            "-ffp-contract=off")

find_package(OpenSSL REQUIRED COMPONENTS Crypto)
find_package(nlohmann_json REQUIRED)
realm_test(tensor_types_test
           SOURCES quantize_test.cc quantize_model_test.cc synth_model_test.cc
           LIBS realm_tensor OpenSSL::Crypto nlohmann_json::nlohmann_json)

find_package(benchmark QUIET)
if(benchmark_FOUND AND NOT REALM_LOW_LAYERS_ONLY)
  add_executable(bench_quantize bench_quantize.cc)
  target_link_libraries(bench_quantize PRIVATE realm_tensor benchmark::benchmark)
endif()
