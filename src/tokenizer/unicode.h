// UTF-8 helpers shared by the tokenizers and the streaming decoder. No exceptions, no PCRE2: the
// wasm guest compiles this file too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace realm::tok {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Length of the UTF-8 sequence a lead byte announces, from its high nibble (1 for ASCII and for
// continuation bytes, 2/3/4 for lead bytes). This is how llama.cpp splits text into symbols.
inline size_t utf8_len(char lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[static_cast<uint8_t>(lead) >> 4];
}

// Decodes one code point at `offset` the lenient way llama.cpp does (a lead byte followed by the
// right number of continuation bytes; overlong forms and surrogates are accepted). Returns false
// (offset unchanged) for an invalid or truncated sequence.
bool decode_utf8(std::string_view s, size_t& offset, uint32_t& cpt);

// Code points of `s`; each byte that does not start a valid sequence becomes U+FFFD (llama.cpp's
// unicode_cpts_from_utf8).
std::vector<uint32_t> utf8_to_cpts(std::string_view s);

// Appends the UTF-8 form of `cpt`; code points above U+10FFFF are written as U+FFFD.
void append_utf8(std::string& out, uint32_t cpt);

// GPT-2 byte-level encoding: every byte maps to one printable code point ('Ġ' for a space).
uint32_t byte_to_gpt2_cpt(uint8_t b);
// Inverse of byte_to_gpt2_cpt; false when `cpt` is not the image of a byte.
bool gpt2_cpt_to_byte(uint32_t cpt, uint8_t& b);

// Length of the longest prefix of `s` that does not end inside an incomplete UTF-8 sequence
// (a trailing lead byte whose continuation bytes have not all arrived yet).
size_t complete_utf8_prefix(std::string_view s);

}  // namespace realm::tok
