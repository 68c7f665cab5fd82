// StreamDecoder: per-stream token -> text for streaming output. Each push() returns only whole
// UTF-8 characters: bytes of a character split across tokens (byte-fallback pieces <0xE2><0x96>...
// or byte-level BPE pieces) are held until the character is complete. No exceptions, no PCRE2:
// the wasm guest compiles this too.
#pragma once

#include <string>

#include "tokenizer/vocab.h"

namespace realm::tok {

struct StreamDecoderOptions {
  // Drop one leading space from the first piece of the stream (llama_detokenize does this for
  // vocabs with add_space_prefix, i.e. SentencePiece). Default: the vocab's add_space_prefix.
  int remove_leading_space = -1;  // -1: vocab default, 0: keep, 1: remove
  // Render control tokens (e.g. "<|im_end|>") instead of emitting nothing for them.
  bool render_special = false;
};

class StreamDecoder {
 public:
  // Borrows `vocab`, which must outlive the decoder.
  explicit StreamDecoder(const Vocab& vocab, StreamDecoderOptions options = {});

  // Appends the text of `id` and returns what can be emitted now: valid UTF-8 only. Bytes that
  // can never form a character (a stray continuation byte, a truncated sequence followed by
  // another character) are emitted as U+FFFD, one per byte.
  std::string push(TokenId id);
  // Emits whatever is held back (an incomplete trailing sequence becomes U+FFFD per byte) and
  // resets the stream.
  std::string flush();
  // Bytes currently held back (0..3).
  size_t pending() const { return pending_.size(); }
  void reset();

 private:
  std::string take_complete(bool final);

  const Vocab& vocab_;
  StreamDecoderOptions options_;
  bool first_ = true;
  std::string pending_;
};

}  // namespace realm::tok
