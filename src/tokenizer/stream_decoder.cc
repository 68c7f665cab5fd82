#include "tokenizer/stream_decoder.h"

#include "tokenizer/unicode.h"

namespace realm::tok {

StreamDecoder::StreamDecoder(const Vocab& vocab, StreamDecoderOptions options)
    : vocab_(vocab), options_(options) {}

void StreamDecoder::reset() {
  first_ = true;
  pending_.clear();
}

std::string StreamDecoder::push(TokenId id) {
  int lstrip = 0;
  if (first_) {
    lstrip = options_.remove_leading_space < 0 ? (vocab_.add_space_prefix() ? 1 : 0)
                                               : options_.remove_leading_space;
    first_ = false;
  }
  vocab_.append_piece(pending_, id, options_.render_special, lstrip);
  return take_complete(false);
}

std::string StreamDecoder::flush() {
  std::string out = take_complete(true);
  reset();
  return out;
}

std::string StreamDecoder::take_complete(bool final) {
  // Keep an incomplete trailing sequence unless this is the end of the stream.
  const size_t keep_from = final ? pending_.size() : complete_utf8_prefix(pending_);
  std::string out;
  out.reserve(keep_from);
  const std::string_view head(pending_.data(), keep_from);
  size_t offset = 0;
  while (offset < head.size()) {
    const uint8_t b = static_cast<uint8_t>(head[offset]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++offset;
      continue;
    }
    // Strict validation (no overlongs, no surrogates, <= U+10FFFF) for what leaves the decoder.
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
  pending_.erase(0, keep_from);
  return out;
}

}  // namespace realm::tok
