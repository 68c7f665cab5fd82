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

# CLI contract checks (the realm binary is defined later, in src/cli).
if(NOT REALM_LOW_LAYERS_ONLY)
  add_test(NAME cli_tokenize_defaults
           COMMAND realm tokenize -m ${REALM_SHARED_DIR}/vocab/ggml-vocab-llama-spm.gguf
                   -p "Hello world")
  set_tests_properties(cli_tokenize_defaults PROPERTIES PASS_REGULAR_EXPRESSION
                       "^\\[15043, 3186\\]\n$")
  add_test(NAME cli_tokenize_add_parse_special
           COMMAND realm tokenize -m ${REALM_SHARED_DIR}/vocab/ggml-vocab-llama-bpe.gguf
                   -p "Hi<|eot_id|>" --add-special --parse-special)
  set_tests_properties(cli_tokenize_add_parse_special PROPERTIES PASS_REGULAR_EXPRESSION
                       "^\\[128000, 13347, 128009\\]\n$")
  add_test(NAME cli_detokenize
           COMMAND realm detokenize -m ${REALM_SHARED_DIR}/vocab/ggml-vocab-llama-spm.gguf
                   "[15043, 3186]")
  set_tests_properties(cli_detokenize PROPERTIES PASS_REGULAR_EXPRESSION "^Hello world\n$")
endif()
