// Holding back incomplete UTF-8 in a byte stream, without a vocab: the StreamDecoder assembles
// token pieces with it, and the WebAssembly guest (which gets pieces from the host's
// `token_piece`) uses the same code, so host and guest release exactly the same text.
#pragma once

#include <string>
#include <string_view>

#include "tokenizer/unicode.h"

namespace realm::tok {

// Removes from the front of `pending` and returns what can be emitted now: whole characters
// (strictly valid: no overlongs, no surrogates, <= U+10FFFF), each invalid byte as U+FFFD. An
// incomplete trailing sequence stays in `pending` unless `final`, when it becomes U+FFFD per byte.
inline std::string take_complete_utf8(std::string& pending, bool final) {
  const size_t keep_from = final ? pending.size() : complete_utf8_prefix(pending);
  std::string out;
  out.reserve(keep_from);
  const std::string_view head(pending.data(), keep_from);
  size_t offset = 0;
  while (offset < head.size()) {
    const uint8_t b = static_cast<uint8_t>(head[offset]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++offset;
      continue;
    }
    size_t n = 0;
    uint32_t min = 0;
    if ((b & 0xE0) == 0xC0) {
      n = 2, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4, min = 0x10000;
    }
    size_t end = offset;
    uint32_t cpt = 0;
    bool ok = n != 0 && offset + n <= head.size() && decode_utf8(head, end, cpt) &&
              end == offset + n && cpt >= min && cpt <= 0x10FFFF &&
              !(cpt >= 0xD800 && cpt <= 0xDFFF);
    if (ok) {
      out.append(head.substr(offset, n));
      offset += n;
    } else {
      append_utf8(out, kReplacementChar);
      ++offset;
    }
  }
  pending.erase(0, keep_from);
  return out;
}

// A byte stream -> complete UTF-8 text (see take_complete_utf8).
class Utf8Stream {
 public:
  // Appends `bytes` and returns the text that is complete now.
  std::string push(std::string_view bytes) {
    pending_.append(bytes);
    return take_complete_utf8(pending_, false);
  }
  // Returns the rest (an incomplete tail as U+FFFD per byte) and resets the stream.
  std::string flush() { return take_complete_utf8(pending_, true); }
  size_t pending() const { return pending_.size(); }
  void reset() { pending_.clear(); }

 private:
  std::string pending_;
};

}  // namespace realm::tok
