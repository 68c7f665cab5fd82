#include "tokenizer/vocab.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

#include "gguf/reader.h"
#include "tokenizer/unicode.h"

namespace realm::tok {
namespace {

struct PreName {
  const char* name;
  PreType type;
  bool ignore_merges;
  bool clean_spaces;  // false where llama.cpp turns clean_spaces off
  bool add_bos;       // true where llama.cpp forces add_bos before reading the metadata
};

// tokenizer.ggml.pre values and their settings (from llama.cpp's llama_vocab::impl::load).
constexpr PreName kPreNames[] = {
    {"default", PreType::DEFAULT, false, true, false},
    {"llama3", PreType::LLAMA3, true, true, true},
    {"llama-v3", PreType::LLAMA3, true, true, true},
    {"llama-bpe", PreType::LLAMA3, true, true, true},
    {"falcon3", PreType::LLAMA3, true, true, true},
    {"falcon-h1", PreType::LLAMA3, true, true, true},
    {"pixtral", PreType::LLAMA3, true, true, true},
    {"midm-2.0", PreType::LLAMA3, true, true, true},
    {"lfm2", PreType::LLAMA3, true, true, true},
    {"deepseek-llm", PreType::DEEPSEEK_LLM, false, false, false},
    {"deepseek-coder", PreType::DEEPSEEK_CODER, false, false, false},
    {"deepseek-v3", PreType::DEEPSEEK3_LLM, false, false, false},
    {"falcon", PreType::FALCON, false, true, false},
    {"mpt", PreType::MPT, false, true, false},
    {"starcoder", PreType::STARCODER, false, true, false},
    {"gpt-2", PreType::GPT2, false, true, false},
    {"phi-2", PreType::GPT2, false, true, false},
    {"jina-es", PreType::GPT2, false, true, false},
    {"jina-de", PreType::GPT2, false, true, false},
    {"gigachat", PreType::GPT2, false, true, false},
    {"jina-v2-es", PreType::GPT2, false, true, false},
    {"jina-v2-de", PreType::GPT2, false, true, false},
    {"jina-v1-en", PreType::GPT2, false, true, false},
    {"jina-v2-code", PreType::GPT2, false, true, false},
    {"roberta-bpe", PreType::GPT2, false, true, false},
    {"refact", PreType::REFACT, false, true, false},
    {"command-r", PreType::COMMAND_R, false, false, false},
    {"qwen2", PreType::QWEN2, false, false, false},
    {"deepseek-r1-qwen", PreType::QWEN2, false, false, false},
    {"qwen35", PreType::QWEN35, false, false, false},
    {"stablelm2", PreType::STABLELM2, false, true, false},
    {"olmo", PreType::OLMO, false, true, false},
    {"dbrx", PreType::DBRX, false, true, false},
    {"smaug-bpe", PreType::SMAUG, false, true, false},
    {"poro-chat", PreType::PORO, false, false, false},
    {"chatglm-bpe", PreType::CHATGLM4, false, true, false},
    {"smollm", PreType::SMOLLM, false, false, false},
    {"codeshell", PreType::CODESHELL, false, true, false},
    {"bloom", PreType::BLOOM, false, true, false},
    {"gpt3-finnish", PreType::GPT3_FINNISH, false, true, false},
    {"exaone", PreType::EXAONE, false, true, false},
    {"minerva-7b", PreType::MINERVA, false, true, false},
    {"tekken", PreType::TEKKEN, true, false, true},
    {"chameleon", PreType::CHAMELEON, false, false, true},
    {"gpt-4o", PreType::GPT4O, false, false, false},
};

// "<｜end▁of▁sentence｜>" (DeepSeek).
constexpr const char kDeepseekEos[] =
    "<\xef\xbd\x9c"
    "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";

// Token texts that llama.cpp treats as end-of-turn / end-of-generation markers.
constexpr const char* kEotTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",     "<|end_of_text|>",
    "<EOT>",      "_<EOT>",     "[EOT]",   kDeepseekEos,    "<end_of_utterance>"};
constexpr const char* kEogTexts[] = {"<|eot_id|>",
                                     "<|im_end|>",
                                     "<|end|>",
                                     "<|return|>",
                                     "<|call|>",
                                     "<|flush|>",
                                     "<|calls|>",
                                     "<end_of_turn>",
                                     "<|endoftext|>",
                                     "</s>",
                                     "<|eom_id|>",
                                     "<EOT>",
                                     "_<EOT>",
                                     "[EOT]",
                                     "[EOS]",
                                     "<|end_of_text|>",
                                     "<end_of_utterance>",
                                     "<eos>",
                                     "<turn|>",
                                     "<|tool_response>",
                                     kDeepseekEos,
                                     "[e~["};

// GGUF token types (tokenizer.ggml.token_type) -> attribute bits.
uint32_t attr_from_type(int64_t t) {
  switch (t) {
    case 1:
      return ATTR_NORMAL;
    case 2:
      return ATTR_UNKNOWN;
    case 3:
      return ATTR_CONTROL;
    case 4:
      return ATTR_USER_DEFINED;
    case 5:
      return ATTR_UNUSED;
    case 6:
      return ATTR_BYTE;
    default:
      return ATTR_UNDEFINED;
  }
}

std::string bpe_key(std::string_view left, std::string_view right) {
  std::string key;
  key.reserve(left.size() + right.size() + 1);
  key.append(left);
  key.push_back('\0');
  key.append(right);
  return key;
}

// SPM: '▁' (U+2581) -> ' '.
std::string unescape_whitespace(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (i + 2 < s.size() + 0 && s.compare(i, 3, "\xe2\x96\x81") == 0) {
      out.push_back(' ');
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// BPE: byte-level text -> bytes; a code point outside the byte map is kept visible the way
// llama.cpp's llama_decode_text does.
std::string decode_byte_level(const std::string& text) {
  std::string out;
  for (uint32_t cpt : utf8_to_cpts(text)) {
    uint8_t b = 0;
    if (gpt2_cpt_to_byte(cpt, b)) {
      out.push_back(static_cast<char>(b));
    } else {
      std::string utf8;
      append_utf8(utf8, cpt);
      out += "[UNK_BYTE_0x";
      for (unsigned char c : utf8) {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%02x", c);
        out += buf;
      }
      out += text + "]";
    }
  }
  return out;
}

// <0xNN> -> NN, or -1.
int parse_byte_token(const std::string& text) {
  if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || text[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    char c = text[i];
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                     : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

Expected<Vocab> Vocab::from_gguf(const gguf::GgufFile& file) {
  Vocab v;
  auto model = file.get_string("tokenizer.ggml.model");
  if (!model) return make_error("tokenizer.ggml.model is missing");
  v.model_ = std::string(*model);
  v.pre_ = std::string(file.get_string("tokenizer.ggml.pre").value_or(""));

  if (v.model_ == "llama") {
    v.type_ = VocabType::SPM;
    v.bos_ = 1;
    v.eos_ = 2;
    v.unk_ = 0;
    v.add_space_prefix_ = true;
    v.clean_spaces_ = false;
    v.add_bos_ = true;
    v.add_eos_ = false;
  } else if (v.model_ == "gpt2") {
    v.type_ = VocabType::BPE;
    v.bos_ = 11;
    v.eos_ = 11;
    v.add_space_prefix_ = false;
    v.clean_spaces_ = true;
    if (v.pre_.empty()) {
      v.pre_type_ = PreType::DEFAULT;
    } else {
      const PreName* found = nullptr;
      for (const auto& p : kPreNames) {
        if (v.pre_ == p.name) found = &p;
      }
      if (!found) return make_error("unsupported tokenizer.ggml.pre '", v.pre_, "'");
      v.pre_type_ = found->type;
      v.ignore_merges_ = found->ignore_merges;
      v.clean_spaces_ = found->clean_spaces;
      if (found->add_bos) v.add_bos_ = true;
      if (found->type == PreType::CHATGLM4) v.bos_ = kNullToken;
    }
    const gguf::Value* merges = file.find("tokenizer.ggml.merges");
    if (!merges || !merges->is_array() || merges->elem_type() != gguf::ValueType::STRING) {
      return make_error("tokenizer.ggml.merges is missing or not a string array");
    }
    const auto& list = merges->strings();
    v.bpe_ranks_.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string& word = list[i];
      std::string_view first, second;
      size_t pos = word.find(' ', 1);
      if (pos != std::string::npos) {
        first = std::string_view(word).substr(0, pos);
        second = std::string_view(word).substr(pos + 1);
      }
      v.bpe_ranks_.emplace(bpe_key(first, second), static_cast<int>(i));
    }
  } else if (v.model_ == "bert") {
    v.type_ = VocabType::WPM;
    v.bos_ = 101;
    v.unk_ = 100;
    v.sep_ = 102;
    v.pad_ = 0;
    v.mask_ = 103;
    v.add_space_prefix_ = false;
    v.clean_spaces_ = true;
    v.add_bos_ = true;
    v.add_eos_ = false;
  } else {
    return make_error("unsupported tokenizer.ggml.model '", v.model_, "'");
  }
  if (auto b = file.get_bool("tokenizer.ggml.add_space_prefix")) v.add_space_prefix_ = *b;

  const gguf::Value* tokens = file.find("tokenizer.ggml.tokens");
  if (!tokens || !tokens->is_array() || tokens->elem_type() != gguf::ValueType::STRING) {
    return make_error("tokenizer.ggml.tokens is missing or not a string array");
  }
  const auto& texts = tokens->strings();
  const size_t n = texts.size();
  if (n == 0 || n > static_cast<size_t>(INT32_MAX)) {
    return make_error("tokenizer.ggml.tokens has ", n, " entries");
  }
  const gguf::Value* scores = file.find("tokenizer.ggml.scores");
  if (scores && (!scores->is_array() || scores->size() < n ||
                 (scores->elem_type() != gguf::ValueType::FLOAT32 &&
                  scores->elem_type() != gguf::ValueType::INT32))) {
    return make_error("tokenizer.ggml.scores: expected ", n, " FLOAT32/INT32 values");
  }
  const gguf::Value* types = file.find("tokenizer.ggml.token_type");
  if (types &&
      (!types->is_array() || types->size() < n || types->elem_type() != gguf::ValueType::INT32)) {
    return make_error("tokenizer.ggml.token_type: expected ", n, " INT32 values");
  }
  v.tokens_.resize(n);
  v.token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TokenData& t = v.tokens_[i];
    t.text = texts[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : texts[i];
    v.token_to_id_[t.text] = static_cast<TokenId>(i);
    v.max_token_len_ = std::max(v.max_token_len_, t.text.size());
    if (scores) {
      const uint8_t* p = scores->raw().data() + i * 4;
      if (scores->elem_type() == gguf::ValueType::FLOAT32) {
        std::memcpy(&t.score, p, 4);
      } else {
        int32_t s;
        std::memcpy(&s, p, 4);
        t.score = static_cast<float>(s);
      }
    }
    if (types) {
      int32_t ty;
      std::memcpy(&ty, types->raw().data() + i * 4, 4);
      t.attr = attr_from_type(ty);
    }
  }

  // Special ids from the metadata override the defaults when in range.
  const struct {
    const char* key;
    TokenId* id;
  } specials[] = {
      {"tokenizer.ggml.bos_token_id", &v.bos_},     {"tokenizer.ggml.eos_token_id", &v.eos_},
      {"tokenizer.ggml.eot_token_id", &v.eot_},     {"tokenizer.ggml.eom_token_id", &v.eom_},
      {"tokenizer.ggml.unknown_token_id", &v.unk_}, {"tokenizer.ggml.seperator_token_id", &v.sep_},
      {"tokenizer.ggml.padding_token_id", &v.pad_}, {"tokenizer.ggml.mask_token_id", &v.mask_}};
  for (const auto& s : specials) {
    if (*s.id >= 0 && static_cast<size_t>(*s.id) >= n) *s.id = kNullToken;
    auto id = file.get_uint(s.key);
    if (!id) continue;
    if (*id < n) {
      *s.id = static_cast<TokenId>(*id);
    } else if (!(*id == UINT32_MAX &&
                 *s.id == kNullToken)) {  // -1 where none is the default: quiet
      v.warnings_.push_back(
          std::string(s.key) + " = " + std::to_string(*id) +
          " is out of range (the vocabulary has " + std::to_string(n) + " tokens); using " +
          (*s.id == kNullToken ? std::string("none") : "the default id " + std::to_string(*s.id)));
    }
  }
  if (auto b = file.get_bool("tokenizer.ggml.add_bos_token")) v.add_bos_ = *b;
  if (auto b = file.get_bool("tokenizer.ggml.add_eos_token")) v.add_eos_ = *b;
  if (auto b = file.get_bool("tokenizer.ggml.normalizer.lowercase")) v.lowercase_ = *b;
  v.strip_accents_ = v.lowercase_;
  if (auto b = file.get_bool("tokenizer.ggml.normalizer.strip_accents")) v.strip_accents_ = *b;

  // EOT / EOM recognized by text when the metadata does not name them; such tokens become
  // control tokens. llama.cpp scans a hash map here; we take the first text in list order.
  if (v.eot_ == kNullToken) {
    for (const char* t : kEotTexts) {
      if (TokenId id = v.find(t); id != kNullToken) {
        v.eot_ = id;
        v.tokens_[id].attr |= ATTR_CONTROL;
        break;
      }
    }
  }
  if (v.eom_ == kNullToken) {
    if (TokenId id = v.find("<|eom_id|>"); id != kNullToken) {
      v.eom_ = id;
      v.tokens_[id].attr |= ATTR_CONTROL;
    }
  }
  // FIM tokens that llama.cpp marks as control and end-of-generation.
  for (const char* t : {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}) {
    if (TokenId id = v.find(t); id != kNullToken) {
      v.tokens_[id].attr |= ATTR_CONTROL;
      v.eog_.push_back(id);
      break;
    }
  }
  for (const char* t : {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}) {
    if (TokenId id = v.find(t); id != kNullToken) {
      v.tokens_[id].attr |= ATTR_CONTROL;
      v.eog_.push_back(id);
      break;
    }
  }
  if (TokenId id = v.find("<|file_sep|>"); id != kNullToken) {
    v.tokens_[id].attr |= ATTR_CONTROL;
    v.eog_.push_back(id);
  }
  for (const char* t :
       {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xe2\x96\x81<PRE>",
        "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\xe2\x96\x81<SUF>",
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\xe2\x96\x81<MID>",
        "<\xef\xbd\x9c"
        "fim\xe2\x96\x81"
        "begin\xef\xbd\x9c>",
        "<\xef\xbd\x9c"
        "fim\xe2\x96\x81"
        "hole\xef\xbd\x9c>",
        "<\xef\xbd\x9c"
        "fim\xe2\x96\x81"
        "end\xef\xbd\x9c>"}) {
    if (TokenId id = v.find(t); id != kNullToken) v.tokens_[id].attr |= ATTR_CONTROL;
  }
  for (const char* t : kEogTexts) {
    if (TokenId id = v.find(t); id != kNullToken) {
      v.eog_.push_back(id);
      v.tokens_[id].attr |= ATTR_CONTROL;
    }
  }
  for (TokenId id : {v.eos_, v.eot_, v.eom_}) {
    if (id != kNullToken) v.eog_.push_back(id);
  }
  std::sort(v.eog_.begin(), v.eog_.end());
  v.eog_.erase(std::unique(v.eog_.begin(), v.eog_.end()), v.eog_.end());
  // o200k_harmony-style vocabs: "<|end|>" is not an end of generation there.
  {
    TokenId end_id = v.find("<|end|>");
    bool has_return = v.find("<|return|>") != kNullToken,
         has_flush = v.find("<|flush|>") != kNullToken;
    bool has_call = v.find("<|call|>") != kNullToken || v.find("<|calls|>") != kNullToken;
    if (end_id != kNullToken && ((has_return && has_call) || (has_call && has_flush))) {
      v.eog_.erase(std::remove(v.eog_.begin(), v.eog_.end(), end_id), v.eog_.end());
      v.tokens_[end_id].attr = ATTR_USER_DEFINED;
    }
  }

  // gemma4 / paddleocr: "</s>" is not an end of generation when "<|tool_response>" exists.
  if (TokenId s_id = v.find("</s>"); s_id != kNullToken &&
                                     v.find("<|tool_response>") != kNullToken &&
                                     v.is_eog(v.find("<|tool_response>"))) {
    v.eog_.erase(std::remove(v.eog_.begin(), v.eog_.end(), s_id), v.eog_.end());
    v.tokens_[s_id].attr = ATTR_NORMAL;
  }

  for (size_t i = 0; i < n; ++i) {
    if (v.tokens_[i].attr & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) {
      v.special_cache_.push_back(static_cast<TokenId>(i));
    }
  }
  std::stable_sort(v.special_cache_.begin(), v.special_cache_.end(), [&](TokenId a, TokenId b) {
    return v.tokens_[a].text.size() > v.tokens_[b].text.size();
  });

  // Per-model token attributes llama.cpp sets by name (Phi-3: special tokens swallow the
  // whitespace after them).
  std::string name(file.get_string("general.name").value_or(""));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (TokenId id : v.special_cache_) v.tokens_[id].attr |= ATTR_RSTRIP;
    if (TokenId id = v.find("</s>"); id != kNullToken) v.tokens_[id].attr |= ATTR_RSTRIP;
    for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) {
      if (TokenId id = v.find(t); id != kNullToken) v.tokens_[id].attr &= ~ATTR_RSTRIP;
    }
  }

  // Texts that precede a '▁' inside some token: the text may not be cut before such a '▁'.
  if (v.type_ == VocabType::SPM) {
    for (const TokenData& t : v.tokens_) {
      for (size_t p = t.text.find("\xe2\x96\x81", 1); p != std::string::npos;
           p = t.text.find("\xe2\x96\x81", p + 1)) {
        v.spm_cut_blockers_.emplace(t.text.substr(0, p), 0);
      }
    }
    for (const auto& [prefix, unused] : v.spm_cut_blockers_) {
      v.spm_cut_blocker_lens_.push_back(prefix.size());
    }
    std::sort(v.spm_cut_blocker_lens_.begin(), v.spm_cut_blocker_lens_.end());
    v.spm_cut_blocker_lens_.erase(
        std::unique(v.spm_cut_blocker_lens_.begin(), v.spm_cut_blocker_lens_.end()),
        v.spm_cut_blocker_lens_.end());
  }

  // Render every piece once (special=true); token_to_piece filters control tokens per call.
  v.pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const TokenData& t = v.tokens_[i];
    std::string& out = v.pieces_[i];
    if (t.attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) {
      out = t.text;
    } else if (t.attr & ATTR_NORMAL) {
      out = v.type_ == VocabType::BPE ? decode_byte_level(t.text) : unescape_whitespace(t.text);
    } else if ((t.attr & ATTR_BYTE) && v.type_ != VocabType::BPE) {
      int b = parse_byte_token(t.text);
      if (b >= 0) out.push_back(static_cast<char>(b));
    }
  }
  return v;
}

TokenId Vocab::find(std::string_view text) const {
  auto it = token_to_id_.find(text);
  return it == token_to_id_.end() ? kNullToken : it->second;
}

int Vocab::bpe_rank(std::string_view left, std::string_view right) const {
  auto it = bpe_ranks_.find(MergeKey{left, right});
  return it == bpe_ranks_.end() ? -1 : it->second;
}

bool Vocab::spm_can_cut_before(std::string_view escaped, size_t pos) const {
  if (pos == 0) return false;
  for (size_t len : spm_cut_blocker_lens_) {
    if (len > pos) break;
    if (spm_cut_blockers_.find(escaped.substr(pos - len, len)) != spm_cut_blockers_.end()) {
      return false;
    }
  }
  return true;
}

bool Vocab::is_eog(TokenId id) const {
  return std::binary_search(eog_.begin(), eog_.end(), id);
}

TokenId Vocab::byte_to_token(uint8_t b) const {
  static const char* hex = "0123456789ABCDEF";
  const char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
  if (TokenId id = find(buf); id != kNullToken) return id;
  if (TokenId id = find(std::string(1, static_cast<char>(b))); id != kNullToken) return id;
  return unk_;
}

void Vocab::append_piece(std::string& out, TokenId id, bool special, int lstrip) const {
  if (!valid(id)) return;
  if (!special && (tokens_[id].attr & (ATTR_UNKNOWN | ATTR_CONTROL))) return;
  std::string_view p = pieces_[id];
  for (int i = 0; i < lstrip && !p.empty() && p.front() == ' '; ++i) p.remove_prefix(1);
  out.append(p);
}

std::string Vocab::token_to_piece(TokenId id, bool special, int lstrip) const {
  std::string out;
  append_piece(out, id, special, lstrip);
  return out;
}

}  // namespace realm::tok
