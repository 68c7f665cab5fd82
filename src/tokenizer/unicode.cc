#include "tokenizer/unicode.h"

namespace realm::tok {

bool decode_utf8(std::string_view s, size_t& offset, uint32_t& cpt) {
  const size_t n = s.size();
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const auto cont = [&](size_t i) { return i < n && (byte(i) & 0xC0) == 0x80; };
  const uint8_t b0 = byte(offset);
  if (!(b0 & 0x80)) {
    cpt = b0;
    offset += 1;
    return true;
  }
  if (!(b0 & 0x40)) return false;  // stray continuation byte
  if (!(b0 & 0x20)) {
    if (!cont(offset + 1)) return false;
    cpt = ((b0 & 0x1Fu) << 6) | (byte(offset + 1) & 0x3Fu);
    offset += 2;
    return true;
  }
  if (!(b0 & 0x10)) {
    if (!cont(offset + 1) || !cont(offset + 2)) return false;
    cpt = ((b0 & 0x0Fu) << 12) | ((byte(offset + 1) & 0x3Fu) << 6) | (byte(offset + 2) & 0x3Fu);
    offset += 3;
    return true;
  }
  if (!(b0 & 0x08)) {
    if (!cont(offset + 1) || !cont(offset + 2) || !cont(offset + 3)) return false;
    cpt = ((b0 & 0x07u) << 18) | ((byte(offset + 1) & 0x3Fu) << 12) |
          ((byte(offset + 2) & 0x3Fu) << 6) | (byte(offset + 3) & 0x3Fu);
    offset += 4;
    return true;
  }
  return false;
}

std::vector<uint32_t> utf8_to_cpts(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t offset = 0;
  while (offset < s.size()) {
    uint32_t cpt = 0;
    if (decode_utf8(s, offset, cpt)) {
      out.push_back(cpt);
    } else {
      out.push_back(kReplacementChar);
      offset += 1;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cpt) {
  if (cpt <= 0x7F) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt <= 0x7FF) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt <= 0xFFFF) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt <= 0x10FFFF) {
    out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    append_utf8(out, kReplacementChar);
  }
}

// Bytes that are printable Latin-1 map to themselves; the other 68 bytes map, in order, to
// U+0100 and up (the GPT-2 "bytes_to_unicode" table). Both directions as tables built at compile
// time: the forward one runs once per input byte of every BPE pre-token.
static constexpr bool gpt2_printable(uint32_t b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}
struct Gpt2Tables {
  uint16_t to_cpt[256];
  uint8_t from_cpt[68];  // code point 0x100 + i -> byte
};
static constexpr Gpt2Tables make_gpt2_tables() {
  Gpt2Tables t{};
  uint32_t n = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    if (gpt2_printable(b)) {
      t.to_cpt[b] = static_cast<uint16_t>(b);
    } else {
      t.to_cpt[b] = static_cast<uint16_t>(0x100 + n);
      t.from_cpt[n++] = static_cast<uint8_t>(b);
    }
  }
  return t;
}
static constexpr Gpt2Tables kGpt2 = make_gpt2_tables();

uint32_t byte_to_gpt2_cpt(uint8_t b) {
  return kGpt2.to_cpt[b];
}

bool gpt2_cpt_to_byte(uint32_t cpt, uint8_t& b) {
  if (cpt < 0x100 && gpt2_printable(cpt)) {
    b = static_cast<uint8_t>(cpt);
    return true;
  }
  if (cpt < 0x100 || cpt >= 0x100 + 68) return false;
  b = kGpt2.from_cpt[cpt - 0x100];
  return true;
}

size_t complete_utf8_prefix(std::string_view s) {
  const size_t n = s.size();
  for (size_t i = 1; i <= 4 && i <= n; ++i) {
    const uint8_t c = static_cast<uint8_t>(s[n - i]);
    size_t need = 0;
    if ((c & 0xE0) == 0xC0) {
      need = 2;
    } else if ((c & 0xF0) == 0xE0) {
      need = 3;
    } else if ((c & 0xF8) == 0xF0) {
      need = 4;
    } else if ((c & 0xC0) == 0x80) {
      continue;  // continuation byte: keep looking for its lead byte
    } else {
      return n;  // ASCII or an invalid lead byte: nothing pending
    }
    // A lead byte i bytes from the end: complete when i >= need, but only if the bytes between
    // are continuation bytes (checked by the loop reaching here).
    return i < need ? n - i : n;
  }
  return n;
}

}  // namespace realm::tok
