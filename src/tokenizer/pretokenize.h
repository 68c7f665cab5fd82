// Pre-tokenizer of byte-level BPE vocabularies: splits text into words with the regexes that
// tokenizer.ggml.pre names (PCRE2 with Unicode properties, JIT-compiled), then maps every byte of
// each word to its GPT-2 byte-level code point. PCRE2 stays behind this interface.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"
#include "util/expected.h"

namespace realm::tok {

class PreTokenizer {
 public:
  // Compiles the regexes of `type`. Errors carry PCRE2's message and the pattern offset.
  static Expected<std::unique_ptr<PreTokenizer>> create(PreType type);
  // Compiles an explicit list of regexes, applied one after another like llama.cpp does.
  static Expected<std::unique_ptr<PreTokenizer>> create(const std::vector<std::string>& regexes);
  ~PreTokenizer();

  // The regexes used for `type` (llama.cpp's pre-tokenizer table).
  static std::vector<std::string> regexes_for(PreType type);

  // Splits `text` and returns the byte-level encoded words. Invalid UTF-8 bytes become U+FFFD
  // first (as llama.cpp's unicode_cpts_from_utf8 does). Thread-safe (per-call match data).
  std::vector<std::string> split(std::string_view text) const;

 private:
  struct Impl;
  explicit PreTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace realm::tok
