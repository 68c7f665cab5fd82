#include "tokenizer/tokenizer.h"

#include <cctype>
#include <queue>
#include <unordered_map>

#include "gguf/reader.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"
#include "tokenizer/wordpiece.h"

namespace realm::tok {
namespace {

// Ids of short pieces of text whose encoding depends on the piece alone, for texts that repeat
// them: the first encoding is recorded as a range of `out`, later ones copy it (by index: `out`
// may reallocate). Pieces longer than kMaxKey bytes are not cached.
class RepeatCache {
 public:
  static constexpr size_t kMaxKey = 32;
  // Appends the ids recorded for `key`; false when there are none.
  bool replay(std::string_view key, std::vector<TokenId>& out) const {
    if (key.size() > kMaxKey) return false;
    const auto it = seen_.find(key);
    if (it == seen_.end()) return false;
    const auto [first, count] = it->second;
    for (size_t i = 0; i < count; ++i) {
      const TokenId id = out[first + i];
      out.push_back(id);
    }
    return true;
  }
  // Records out[first ..] as the ids of `key`.
  void record(std::string_view key, size_t first, const std::vector<TokenId>& out) {
    if (key.size() <= kMaxKey) seen_.emplace(key, std::make_pair(first, out.size() - first));
  }

 private:
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen_;
};

// A piece of the input: raw text (offset/length into the input) or an already matched token.
struct Fragment {
  TokenId token = kNullToken;  // kNullToken for raw text
  size_t offset = 0;
  size_t length = 0;
};

bool is_space(char c) {
  return std::isspace(static_cast<unsigned char>(c)) != 0;
}

// Splits raw-text fragments around every occurrence of each special token, longest token first
// (llama.cpp's tokenizer_st_partition, including the lstrip/rstrip attributes).
std::vector<Fragment> partition(const Vocab& vocab, std::string_view text, bool parse_special) {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({kNullToken, 0, text.size()});
  std::vector<Fragment> next;
  for (TokenId id : vocab.special_tokens()) {
    const uint32_t attr = vocab.attr(id);
    if (!parse_special && (attr & (ATTR_CONTROL | ATTR_UNKNOWN))) continue;
    const std::string& tok = vocab.text(id);
    next.clear();
    bool changed = false;
    for (const Fragment& f : frags) {
      if (f.token != kNullToken) {
        next.push_back(f);
        continue;
      }
      size_t base = f.offset, len = f.length;
      while (true) {
        const size_t match = text.substr(0, base + len).find(tok, base);
        if (match == std::string_view::npos) break;
        changed = true;
        if (match > base) {
          size_t left_len = match - base;
          if (attr & ATTR_LSTRIP) {
            while (left_len > 0 && is_space(text[base + left_len - 1])) --left_len;
          }
          if (left_len > 0) next.push_back({kNullToken, base, left_len});
        }
        next.push_back({id, 0, 0});
        const size_t right = match + tok.size();
        size_t right_len = base + len - right;
        size_t right_off = right;
        if (attr & ATTR_RSTRIP) {
          while (right_len > 0 && is_space(text[right_off])) {
            ++right_off;
            --right_len;
          }
        }
        base = right_off;
        len = right_len;
        if (len == 0) break;
      }
      if (len > 0) next.push_back({kNullToken, base, len});
    }
    if (changed) frags.swap(next);
  }
  return frags;
}

// ---- SentencePiece (llama) ----

struct Symbol {
  const char* text;
  size_t n;
  int prev;
  int next;
};

struct SpmBigram {
  int left;
  int right;
  float score;
  size_t size;
};

struct SpmOrder {
  bool operator()(const SpmBigram& a, const SpmBigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

class SpmSession {
 public:
  SpmSession(const Vocab& vocab, bool segmented = true) : vocab_(vocab), segmented_(segmented) {}

  void tokenize(const std::string& text, std::vector<TokenId>& out) {
    // Symbols are UTF-8 characters (by lead byte). The text is cut into segments before a '▁'
    // symbol where no token can span the cut; merging each segment on its own gives the same
    // result as one global merge queue, with small queues.
    std::vector<int> seg_starts = {0};
    for (size_t offs = 0; offs < text.size();) {
      const size_t n = std::min(utf8_len(text[offs]), text.size() - offs);
      const int index = static_cast<int>(symbols_.size());
      if (segmented_ && n == 3 && offs > 0 && text.compare(offs, 3, "\xe2\x96\x81") == 0 &&
          vocab_.spm_can_cut_before(text, offs)) {
        seg_starts.push_back(index);
      }
      offs += n;
      symbols_.push_back({text.data() + offs - n, n, index - 1, index + 1});
    }
    if (symbols_.empty()) return;
    seg_starts.push_back(static_cast<int>(symbols_.size()));
    // A segment's ids depend on its bytes only: repeated short segments are merged once.
    RepeatCache cache;
    const bool use_cache = seg_starts.size() > 64;
    for (size_t s = 0; s + 1 < seg_starts.size(); ++s) {
      const int first = seg_starts[s], end = seg_starts[s + 1];
      if (first == end) continue;
      const std::string_view bytes(
          symbols_[first].text,
          static_cast<size_t>(symbols_[end - 1].text + symbols_[end - 1].n - symbols_[first].text));
      if (use_cache && cache.replay(bytes, out)) continue;
      const size_t start = out.size();
      symbols_[first].prev = -1;
      symbols_[end - 1].next = -1;
      merge_segment(first, end, out);
      if (use_cache) cache.record(bytes, start, out);
    }
  }

  void merge_segment(int first, int end, std::vector<TokenId>& out) {
    for (int i = first + 1; i < end; ++i) try_add(i - 1, i);
    while (!queue_.empty()) {
      const SpmBigram b = queue_.top();
      queue_.pop();
      Symbol& l = symbols_[b.left];
      Symbol& r = symbols_[b.right];
      if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) symbols_[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    for (int i = first; i != -1; i = symbols_[i].next) resegment(symbols_[i], out);
  }

 private:
  // A symbol's text is a token unless it is an initial character that is not in the vocab (a
  // merge is only queued when the merged text is a token), so the reverse-merge table of
  // llama.cpp's resegment() never applies: such symbols become byte tokens.
  void resegment(const Symbol& s, std::vector<TokenId>& out) {
    const std::string_view text(s.text, s.n);
    if (TokenId id = vocab_.find(text); id != kNullToken) {
      out.push_back(id);
      return;
    }
    for (char c : text) out.push_back(vocab_.byte_to_token(static_cast<uint8_t>(c)));
  }

  void try_add(int left, int right) {
    if (left == -1 || right == -1) return;
    const std::string_view text(symbols_[left].text, symbols_[left].n + symbols_[right].n);
    const TokenId id = vocab_.find(text);
    if (id == kNullToken) return;
    queue_.push({left, right, vocab_.token(id).score, text.size()});
  }

  const Vocab& vocab_;
  const bool segmented_;
  std::vector<Symbol> symbols_;
  std::priority_queue<SpmBigram, std::vector<SpmBigram>, SpmOrder> queue_;
};

// ---- byte-level BPE (gpt2) ----

struct BpeBigram {
  int left;
  int right;
  int rank;
  std::string_view text;  // into the word being merged
};

struct BpeOrder {
  bool operator()(const BpeBigram& a, const BpeBigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

void bpe_word(const Vocab& vocab, const std::string& word, std::vector<TokenId>& out,
              std::vector<Symbol>& symbols) {
  symbols.clear();
  if (vocab.ignore_merges()) {
    if (TokenId id = vocab.find(word); id != kNullToken) {
      out.push_back(id);
      return;
    }
  }
  for (size_t offs = 0; offs < word.size();) {
    const size_t n = std::min(utf8_len(word[offs]), word.size() - offs);
    const int index = static_cast<int>(symbols.size());
    offs += n;
    symbols.push_back({word.data() + offs - n, n, index - 1, offs == word.size() ? -1 : index + 1});
  }
  std::priority_queue<BpeBigram, std::vector<BpeBigram>, BpeOrder> queue;
  auto add = [&](int left, int right) {
    if (left == -1 || right == -1) return;
    const std::string_view l(symbols[left].text, symbols[left].n);
    const std::string_view r(symbols[right].text, symbols[right].n);
    const int rank = vocab.bpe_rank(l, r);
    if (rank < 0) return;
    queue.push({left, right, rank, std::string_view(l.data(), l.size() + r.size())});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) add(i - 1, i);
  while (!queue.empty()) {
    const BpeBigram b = queue.top();
    queue.pop();
    Symbol& l = symbols[b.left];
    Symbol& r = symbols[b.right];
    if (l.n == 0 || r.n == 0) continue;
    // Outdated when either side changed since the pair was queued (symbols are contiguous, so
    // comparing lengths is comparing texts).
    if (l.n + r.n != b.text.size() || l.text + l.n != r.text) continue;
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = b.left;
    add(l.prev, b.left);
    add(b.left, l.next);
  }
  for (const Symbol& s : symbols) {
    if (s.n == 0) continue;
    const std::string_view str(s.text, s.n);
    if (TokenId id = vocab.find(str); id != kNullToken) {
      out.push_back(id);
      continue;
    }
    for (char c : str) {
      if (TokenId id = vocab.find(std::string_view(&c, 1)); id != kNullToken) out.push_back(id);
    }
  }
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Expected<Tokenizer> Tokenizer::from_gguf(const gguf::GgufFile& file) {
  auto vocab = Vocab::from_gguf(file);
  if (!vocab) return vocab.take_error();
  Tokenizer t;
  t.vocab_ = std::make_unique<Vocab>(std::move(*vocab));
  if (t.vocab_->type() == VocabType::BPE) {
    auto pre = PreTokenizer::create(t.vocab_->pre_type());
    if (!pre) return pre.take_error();
    t.pre_ = std::move(*pre);
  }
  return t;
}

Expected<Tokenizer> Tokenizer::load(const std::string& path) {
  auto file = gguf::GgufFile::open(path);
  if (!file) return file.take_error();
  auto t = from_gguf(*file);
  if (!t) return make_error(path, ": ", t.error().message);
  return t;
}

void Tokenizer::encode_spm(std::string_view text, std::vector<TokenId>& out) const {
  std::string escaped;
  escaped.reserve(text.size() * 3 / 2);
  for (char c : text) {
    if (c == ' ') {
      escaped += "\xe2\x96\x81";  // '▁'
    } else {
      escaped.push_back(c);
    }
  }
  SpmSession session(*vocab_);
  session.tokenize(escaped, out);
}

std::vector<TokenId> Tokenizer::spm_merge_for_test(const Vocab& vocab, const std::string& escaped,
                                                   bool segmented) {
  std::vector<TokenId> out;
  SpmSession session(vocab, segmented);
  session.tokenize(escaped, out);
  return out;
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<TokenId>& out) const {
  std::vector<Symbol> symbols;
  const std::vector<std::string> words = pre_->split(text);
  // Vocabs with ignore_merges find most words whole, where a cache only adds work.
  if (words.size() < 64 || vocab_->ignore_merges()) {
    for (const std::string& word : words) bpe_word(*vocab_, word, out, symbols);
    return;
  }
  // Long texts repeat words: the merge result of a word depends on the word only, so each
  // distinct (short) word is merged once per call.
  RepeatCache cache;
  for (const std::string& word : words) {
    if (cache.replay(word, out)) continue;
    const size_t first = out.size();
    bpe_word(*vocab_, word, out, symbols);
    cache.record(word, first, out);
  }
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const Vocab& v = *vocab_;
  std::vector<TokenId> out;
  const std::vector<Fragment> frags = partition(v, text, parse_special);
  // WordPiece always starts with [CLS] when adding special tokens (llama.cpp ignores add_bos).
  if (add_special && (v.add_bos() || v.type() == VocabType::WPM) && v.bos() != kNullToken) {
    out.push_back(v.bos());
  }
  if (v.type() == VocabType::SPM) {
    bool prev_special = true;  // the first fragment gets the space prefix
    std::string piece;
    for (const Fragment& f : frags) {
      if (f.token != kNullToken) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      piece.clear();
      if (v.add_space_prefix() && prev_special) piece.push_back(' ');
      piece.append(text.substr(f.offset, f.length));
      encode_spm(piece, out);
      prev_special = false;
    }
  } else if (v.type() == VocabType::WPM) {
    // WordPiece: [CLS] ... [SEP] when adding special tokens.
    for (const Fragment& f : frags) {
      if (f.token != kNullToken) {
        out.push_back(f.token);
      } else {
        wordpiece_encode(v, text.substr(f.offset, f.length), out);
      }
    }
    if (add_special && v.sep() != kNullToken) out.push_back(v.sep());
    return out;
  } else {
    for (const Fragment& f : frags) {
      if (f.token != kNullToken) {
        out.push_back(f.token);
      } else {
        encode_bpe(text.substr(f.offset, f.length), out);
      }
    }
  }
  if (add_special && v.add_eos() && v.eos() != kNullToken) out.push_back(v.eos());
  return out;
}

std::string Tokenizer::detokenize(std::span<const TokenId> ids, bool remove_special,
                                  bool unparse_special) const {
  const Vocab& v = *vocab_;
  int remove_space = v.add_space_prefix() ? 1 : 0;
  if (remove_special && v.add_bos() && !ids.empty() && ids.front() == v.bos()) {
    remove_space = 0;
    ids = ids.subspan(1);
  }
  if (remove_special && v.add_eos() && !ids.empty() && ids.back() == v.eos()) {
    ids = ids.first(ids.size() - 1);
  }
  std::string text;
  for (TokenId id : ids) {
    v.append_piece(text, id, unparse_special, remove_space);
    remove_space = 0;
  }
  if (!v.clean_spaces() || text.empty()) return text;

  // The clean-up passes of llama_detokenize (HF clean_up_tokenization_spaces).
  std::string a;  // " ?" " !" " ." " ," -> drop the space
  a.push_back(text[0]);
  for (size_t i = 1; i < text.size(); ++i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
    a.push_back(x);
  }
  std::string b;  // " ' " -> "'"
  b.push_back(a[0]);
  for (size_t i = 1; i < a.size(); ++i) {
    const char x = a[i];
    if (x == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && a[i + 1] == ' ') {
      b.pop_back();
      a[++i] = '\0';  // skip the next space (and, like llama.cpp, forget it was one)
    }
    b.push_back(x);
  }
  std::string c;  // " 's" " 'm" " 're" " 've" -> drop the space
  c.push_back(b[0]);
  for (size_t i = 1; i < b.size(); ++i) {
    const char x = b[i];
    if (b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
      const char x1 = b[i + 1];
      if (x1 == 's' || x1 == 'm') {
        c.pop_back();
      } else if (i + 2 < b.size() &&
                 ((x1 == 'r' && b[i + 2] == 'e') || (x1 == 'v' && b[i + 2] == 'e'))) {
        c.pop_back();
      }
    }
    c.push_back(x);
  }
  return c;
}

}  // namespace realm::tok
