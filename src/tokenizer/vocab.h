// Vocab: the token table of a model, read from GGUF `tokenizer.ggml.*` metadata the way llama.cpp
// reads it (token texts, scores, types, merges, special ids, add_bos/add_eos, the EOG set), plus
// token -> piece rendering. No PCRE2 and no exceptions here: the streaming decoder (and with it
// the wasm guest) depends on this file only.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "util/expected.h"

namespace realm::gguf {
class GgufFile;
}

namespace realm::tok {

using TokenId = int32_t;
inline constexpr TokenId kNullToken = -1;

// tokenizer.ggml.model: llama (SentencePiece), gpt2 (byte-level BPE), bert (WordPiece).
enum class VocabType { SPM, BPE, WPM };

// tokenizer.ggml.pre (BPE pre-tokenizer split rules), grouped the way llama.cpp groups them.
enum class PreType {
  DEFAULT,
  LLAMA3,
  DEEPSEEK_LLM,
  DEEPSEEK_CODER,
  DEEPSEEK3_LLM,
  FALCON,
  MPT,
  STARCODER,
  GPT2,
  REFACT,
  COMMAND_R,
  QWEN2,
  QWEN35,
  STABLELM2,
  OLMO,
  DBRX,
  SMAUG,
  PORO,
  CHATGLM4,
  SMOLLM,
  CODESHELL,
  BLOOM,
  GPT3_FINNISH,
  EXAONE,
  MINERVA,
  TEKKEN,
  CHAMELEON,
  GPT4O,
};

// Per-token attribute bits (llama.cpp's llama_token_attr values).
enum TokenAttr : uint32_t {
  ATTR_UNDEFINED = 0,
  ATTR_UNKNOWN = 1u << 0,
  ATTR_UNUSED = 1u << 1,
  ATTR_NORMAL = 1u << 2,
  ATTR_CONTROL = 1u << 3,
  ATTR_USER_DEFINED = 1u << 4,
  ATTR_BYTE = 1u << 5,
  ATTR_NORMALIZED = 1u << 6,
  ATTR_LSTRIP = 1u << 7,
  ATTR_RSTRIP = 1u << 8,
  ATTR_SINGLE_WORD = 1u << 9,
};

struct TokenData {
  std::string text;
  float score = 0.0f;
  uint32_t attr = ATTR_NORMAL;
};

class Vocab {
 public:
  // Reads the vocabulary from `file`'s metadata. Errors name the key and the offending value.
  static Expected<Vocab> from_gguf(const gguf::GgufFile& file);

  VocabType type() const { return type_; }
  PreType pre_type() const { return pre_type_; }
  const std::string& model_name() const {
    return model_;
  }  // tokenizer.ggml.model: llama (SentencePiece), gpt2 (byte-level BPE), bert (WordPiece).
  const std::string& pre_name() const { return pre_; }  // tokenizer.ggml.pre ("" if absent)
  size_t size() const { return tokens_.size(); }
  bool valid(TokenId id) const { return id >= 0 && static_cast<size_t>(id) < tokens_.size(); }
  const TokenData& token(TokenId id) const { return tokens_[static_cast<size_t>(id)]; }
  const std::string& text(TokenId id) const { return token(id).text; }
  uint32_t attr(TokenId id) const { return token(id).attr; }
  bool is_control(TokenId id) const { return valid(id) && (attr(id) & ATTR_CONTROL); }
  // The id of a token text, or kNullToken.
  TokenId find(std::string_view text) const;
  // Merge rank of the pair (left, right), or -1 (BPE only).
  int bpe_rank(std::string_view left, std::string_view right) const;

  TokenId bos() const { return bos_; }
  TokenId eos() const { return eos_; }
  TokenId eot() const { return eot_; }
  TokenId eom() const { return eom_; }
  TokenId unk() const { return unk_; }
  TokenId pad() const { return pad_; }
  TokenId sep() const { return sep_; }
  // Tokens that end generation (EOS, EOT, EOM and tokens recognized by their text, as llama.cpp).
  const std::vector<TokenId>& eog_ids() const { return eog_; }
  bool is_eog(TokenId id) const;
  // What the loader had to correct in the file's metadata, one sentence each (a special token id
  // out of range and the id used instead, as llama.cpp warns); callers show them to the user.
  const std::vector<std::string>& warnings() const { return warnings_; }

  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  bool clean_spaces() const { return clean_spaces_; }
  bool ignore_merges() const { return ignore_merges_; }
  // WordPiece normalizer settings (tokenizer.ggml.normalizer.*).
  bool lowercase() const { return lowercase_; }
  bool strip_accents() const { return strip_accents_; }
  size_t max_token_len() const { return max_token_len_; }
  // Control, user-defined and unknown tokens, longest text first: the tokens matched in raw text
  // before the model's tokenizer runs.
  const std::vector<TokenId>& special_tokens() const { return special_cache_; }

  // SPM: true when no token can span the start of the '▁' at byte `pos` of `escaped` (no token
  // has a '▁' after a prefix equal to the text before it), so the text can be cut there and
  // both sides tokenized independently with the same result.
  bool spm_can_cut_before(std::string_view escaped, size_t pos) const;

  // SPM byte token for `b` (<0xNN>), or the token whose text is that byte, or the UNK token.
  TokenId byte_to_token(uint8_t b) const;

  // The text of one token as llama.cpp's token_to_piece renders it: control/unknown tokens are
  // empty unless `special`; SPM '▁' becomes ' ' and <0xNN> the byte; BPE byte-level text is
  // decoded to bytes. Up to `lstrip` leading spaces are dropped. Invalid ids give "".
  std::string token_to_piece(TokenId id, bool special, int lstrip = 0) const;
  // Appends the piece of `id` to `out` (same rules as token_to_piece).
  void append_piece(std::string& out, TokenId id, bool special, int lstrip = 0) const;

 private:
  VocabType type_ = VocabType::SPM;
  PreType pre_type_ = PreType::DEFAULT;
  std::string model_;
  std::string pre_;
  std::vector<TokenData> tokens_;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>> token_to_id_;
  // Merge ranks keyed by left + '\0' + right, looked up without building the key.
  struct MergeKey {
    std::string_view left, right;
  };
  struct MergeHash {
    using is_transparent = void;
    static uint64_t mix(uint64_t h, std::string_view s) {
      for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;  // FNV-1a
      return h;
    }
    size_t operator()(const std::string& k) const { return mix(14695981039346656037ull, k); }
    size_t operator()(const MergeKey& k) const {
      return mix((mix(14695981039346656037ull, k.left) ^ 0u) * 1099511628211ull, k.right);
    }
  };
  struct MergeEq {
    using is_transparent = void;
    bool operator()(const std::string& a, const std::string& b) const { return a == b; }
    bool operator()(const MergeKey& k, const std::string& s) const {
      return s.size() == k.left.size() + 1 + k.right.size() &&
             s.compare(0, k.left.size(), k.left) == 0 && s[k.left.size()] == '\0' &&
             s.compare(k.left.size() + 1, k.right.size(), k.right) == 0;
    }
    bool operator()(const std::string& s, const MergeKey& k) const { return (*this)(k, s); }
  };
  std::unordered_map<std::string, int, MergeHash, MergeEq> bpe_ranks_;
  std::vector<std::string> pieces_;  // rendered piece per token (special=true)
  std::unordered_map<std::string, char, StringHash, std::equal_to<>> spm_cut_blockers_;
  std::vector<size_t> spm_cut_blocker_lens_;
  std::vector<TokenId> eog_;
  std::vector<std::string> warnings_;
  std::vector<TokenId> special_cache_;
  TokenId bos_ = kNullToken, eos_ = kNullToken, eot_ = kNullToken, eom_ = kNullToken;
  TokenId unk_ = kNullToken, pad_ = kNullToken, sep_ = kNullToken, mask_ = kNullToken;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false, clean_spaces_ = false;
  bool ignore_merges_ = false;
  bool lowercase_ = true, strip_accents_ = true;
  size_t max_token_len_ = 0;
};

}  // namespace realm::tok
