# Included by CMakeLists.txt. realm_tokenizer: vocab, SPM/BPE tokenizers, streaming decoder.
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(ICU REQUIRED IMPORTED_TARGET icu-uc)  # WordPiece normalization only

add_library(realm_tokenizer unicode.cc vocab.cc pretokenize.cc tokenizer.cc stream_decoder.cc
            wordpiece.cc)
target_include_directories(realm_tokenizer PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(realm_tokenizer PUBLIC realm_gguf PRIVATE PkgConfig::PCRE2 PkgConfig::ICU)

find_package(nlohmann_json REQUIRED)
realm_test(tokenizer_test
           SOURCES tokenizer_test.cc vocab_vectors_test.cc stream_decoder_test.cc
           LIBS realm_tokenizer nlohmann_json::nlohmann_json)

add_executable(bench_tokenize bench_tokenize.cc)
target_link_libraries(bench_tokenize PRIVATE realm_tokenizer)
