#include "tokenizer/stream_decoder.h"

#include "tokenizer/utf8_stream.h"

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
  return take_complete_utf8(pending_, final);
}

}  // namespace realm::tok
