// Tokenizer: text <-> token ids exactly as llama.cpp's llama_tokenize / llama_detokenize do it,
// for SentencePiece-style (`llama`) and byte-level BPE (`gpt2`) vocabularies from GGUF metadata.
// Exception-free; PCRE2 is used only inside the BPE pre-tokenizer (pretokenize.cc).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"
#include "util/expected.h"

namespace realm::tok {

class PreTokenizer;

class Tokenizer {
 public:
  // Builds the vocab and (for BPE) compiles the pre-tokenizer regexes.
  static Expected<Tokenizer> from_gguf(const gguf::GgufFile& file);
  // Opens a GGUF file (a model or a vocab-only file) and reads its tokenizer.
  static Expected<Tokenizer> load(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // The vocab lives on the heap: references to it stay valid when the Tokenizer moves.
  const Vocab& vocab() const { return *vocab_; }

  // Text -> ids. `add_special`: BOS/EOS as the vocab's add_bos/add_eos say. `parse_special`:
  // control-token text ("<|im_end|>", "</s>") becomes that token; user-defined tokens are always
  // matched (as in llama.cpp). Bytes that are not valid UTF-8 never fail: SPM encodes them as
  // byte tokens, BPE replaces each with U+FFFD (llama.cpp's behaviour).
  // Thread-safe: a Tokenizer is immutable after loading and may be shared by many threads.
  std::vector<TokenId> encode(std::string_view text, bool add_special, bool parse_special) const;

  // One token's text (see Vocab::token_to_piece).
  std::string token_to_piece(TokenId id, bool special = true) const {
    return vocab_->token_to_piece(id, special);
  }

  // Ids -> text like llama_detokenize: the SPM leading space of the first piece is removed;
  // `remove_special` drops a leading BOS / trailing EOS the vocab adds; `unparse_special`
  // renders control tokens; BPE vocabs with clean_spaces tidy " ," " 's" etc.
  std::string detokenize(std::span<const TokenId> ids, bool remove_special = false,
                         bool unparse_special = false) const;

  // SPM merge of already escaped text, with or without cutting it into independent segments
  // (tests check both give the same ids).
  static std::vector<TokenId> spm_merge_for_test(const Vocab& vocab, const std::string& escaped,
                                                 bool segmented);

 private:
  Tokenizer();
  void encode_spm(std::string_view text, std::vector<TokenId>& out) const;
  void encode_bpe(std::string_view text, std::vector<TokenId>& out) const;

  std::unique_ptr<Vocab> vocab_;
  std::unique_ptr<PreTokenizer> pre_;
};

}  // namespace realm::tok
