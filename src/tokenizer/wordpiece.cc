#include "tokenizer/wordpiece.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/utf16.h>

#include <algorithm>
#include <string>

#include "tokenizer/unicode.h"

namespace realm::tok {
namespace {

// CJK ideograph blocks BERT splits into single-character words (the ranges of HF's
// _is_chinese_char, with the 0x2B920 start llama.cpp copies from the Rust tokenizer).
bool is_chinese_char(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

uint32_t gc_mask(uint32_t c) {
  return U_GET_GC_MASK(static_cast<UChar32>(c));
}

// First code point of the canonical decomposition (what stripping accents keeps).
uint32_t nfd_first(const UNormalizer2* nfd, uint32_t c) {
  if (!nfd || c > 0x10FFFF) return c;
  UChar buf[32];
  UErrorCode status = U_ZERO_ERROR;
  const int32_t n = unorm2_getDecomposition(nfd, static_cast<UChar32>(c), buf, 32, &status);
  if (U_FAILURE(status) || n <= 0) return c;
  UChar32 first = 0;
  int32_t i = 0;
  U16_NEXT(buf, i, n, first);
  return static_cast<uint32_t>(first);
}

std::vector<std::string> preprocess(const Vocab& vocab, std::string_view text) {
  UErrorCode status = U_ZERO_ERROR;
  const UNormalizer2* nfd = vocab.strip_accents() ? unorm2_getNFDInstance(&status) : nullptr;
  if (U_FAILURE(status)) nfd = nullptr;
  std::vector<std::string> words(1);
  for (uint32_t c : utf8_to_cpts(text)) {
    if (nfd) c = nfd_first(nfd, c);
    const bool valid = c <= 0x10FFFF;
    if (valid && u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE)) {
      if (!words.back().empty()) words.emplace_back();
      continue;
    }
    const uint32_t m = valid ? gc_mask(c) : 0;
    if (c == 0 || c == kReplacementChar ||
        (m & (U_GC_CC_MASK | U_GC_CF_MASK | U_GC_CS_MASK | U_GC_CO_MASK))) {
      continue;
    }
    if (vocab.strip_accents() && (m & U_GC_M_MASK)) continue;
    std::string s;
    append_utf8(s, vocab.lowercase() && valid
                       ? static_cast<uint32_t>(u_tolower(static_cast<UChar32>(c)))
                       : c);
    if ((m & U_GC_P_MASK) || (c < 0x7F && (m & U_GC_S_MASK)) || is_chinese_char(c)) {
      if (!words.back().empty()) words.emplace_back();
      words.back() = std::move(s);
      words.emplace_back();
    } else {
      words.back() += s;
    }
  }
  if (words.back().empty()) words.pop_back();
  return words;
}

}  // namespace

void wordpiece_encode(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out) {
  const size_t max_len = vocab.max_token_len();
  for (const std::string& word : preprocess(vocab, text)) {
    if (word.empty()) continue;
    const std::string w = "\xe2\x96\x81" + word;  // phantom space: '▁'
    const size_t n = w.size();
    const size_t start = out.size();
    for (size_t i = 0; i < n; ++i) {
      bool match = false;
      for (size_t j = std::min(n, i + max_len + 1); j > i; --j) {
        if (TokenId id = vocab.find(std::string_view(w).substr(i, j - i)); id != kNullToken) {
          out.push_back(id);
          match = true;
          i = j - 1;
          break;
        }
      }
      if (!match) {  // no piece fits: the whole word becomes UNK
        out.resize(start);
        break;
      }
    }
    if (out.size() == start) out.push_back(vocab.unk());
  }
}

}  // namespace realm::tok
