// Jinja lexer: data/tag splitting with Jinja2's whitespace rules, then expression tokens.
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "tokenizer/jinja_ast.h"

namespace realm::jinja {
namespace {

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {}

  Expected<std::vector<Token>> run() {
    const size_t n = src_.size();
    bool line_starting = true;  // Jinja: the previous match ended with '\n' (or template start)
    while (pos_ < n) {
      size_t i = find_opener(pos_);
      std::string data = src_.substr(pos_, (i == std::string::npos ? n : i) - pos_);
      if (i == std::string::npos) {
        push_data(std::move(data), pos_);
        break;
      }
      char type = src_[i + 1];
      char mod = (i + 2 < n && (src_[i + 2] == '-' || src_[i + 2] == '+')) ? src_[i + 2] : 0;
      if (mod == '-') {
        data = std::string(py_strip(data, false, true));
      } else if (type != '{' && mod != '+') {
        // lstrip_blocks: drop spaces/tabs between the line start and a block or comment tag.
        size_t nl = data.rfind('\n');
        size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if (l_pos > 0 || line_starting) {
          if (data.find_first_not_of(" \t", l_pos) == std::string::npos) data.resize(l_pos);
        }
      }
      push_data(std::move(data), pos_);
      size_t p = i + 2 + (mod ? 1 : 0);
      if (type == '#') {
        size_t j = src_.find("#}", p);
        if (j == std::string::npos) return error_at(i, "unclosed comment");
        char end_mod = j > p && (src_[j - 1] == '-' || src_[j - 1] == '+') ? src_[j - 1] : 0;
        pos_ = j + 2;
        finish_tag(end_mod);
      } else {
        bool is_block = type == '%';
        push(is_block ? TokKind::BLOCK_BEGIN : TokKind::VAR_BEGIN, "", i);
        pos_ = p;
        size_t first_token = toks_.size();
        auto r = lex_tag(is_block);
        if (!r) return r.take_error();
        // {% raw %}: everything up to {% endraw %} is data.
        if (is_block && toks_.size() == first_token + 2 &&
            toks_[first_token].kind == TokKind::NAME && toks_[first_token].text == "raw") {
          toks_.resize(first_token - 1);
          REALM_TRY(lex_raw(i));
        }
      }
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    Token end;
    end.kind = TokKind::END;
    set_pos(end, n);
    toks_.push_back(std::move(end));
    return std::move(toks_);
  }

 private:
  size_t find_opener(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  // After a tag end at pos_: '-' eats all following whitespace, '+' keeps it, otherwise
  // trim_blocks eats one newline.
  void finish_tag(char end_mod) {
    if (end_mod == '-') {
      size_t rest = src_.size() - pos_;
      std::string_view tail = py_strip(std::string_view(src_).substr(pos_), true, false);
      pos_ += rest - tail.size();
    } else if (end_mod != '+' && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
  }

  Status lex_raw(size_t tag_pos) {
    // Find {%[-+]? endraw [-+]?%}
    for (size_t i = src_.find("{%", pos_); i != std::string::npos; i = src_.find("{%", i + 1)) {
      size_t p = i + 2;
      char mod = p < src_.size() && (src_[p] == '-' || src_[p] == '+') ? src_[p] : 0;
      if (mod) ++p;
      while (p < src_.size() && std::strchr(" \t\n", src_[p])) ++p;
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p += 6;
      while (p < src_.size() && std::strchr(" \t\n", src_[p])) ++p;
      char end_mod = p < src_.size() && (src_[p] == '-' || src_[p] == '+') ? src_[p] : 0;
      if (end_mod) ++p;
      if (src_.compare(p, 2, "%}") != 0) continue;
      std::string data = src_.substr(pos_, i - pos_);
      if (mod == '-') data = std::string(py_strip(data, false, true));
      push_data(std::move(data), pos_);
      pos_ = p + 2;
      finish_tag(end_mod);
      return {};
    }
    return error_at(tag_pos, "unclosed {% raw %} block");
  }

  Status lex_tag(bool is_block) {
    const size_t n = src_.size();
    int open_brackets = 0;  // Jinja matches a tag end only when ( [ { are balanced
    while (true) {
      while (pos_ < n && (src_[pos_] == ' ' || src_[pos_] == '\t' || src_[pos_] == '\n' ||
                          src_[pos_] == '\r' || src_[pos_] == '\f' || src_[pos_] == '\v')) {
        ++pos_;
      }
      if (pos_ >= n) return error_at(pos_, is_block ? "missing '%}'" : "missing '}}'");
      // Tag end (checked before operators, like Jinja).
      const char* close = is_block ? "%}" : "}}";
      char mod = 0;
      size_t at = pos_;
      if ((src_[pos_] == '-' || (is_block && src_[pos_] == '+')) &&
          src_.compare(pos_ + 1, 2, close) == 0) {
        mod = src_[pos_];
        at = pos_ + 1;
      }
      if (open_brackets == 0 && src_.compare(at, 2, close) == 0) {
        push(is_block ? TokKind::BLOCK_END : TokKind::VAR_END, "", pos_);
        pos_ = at + 2;
        if (is_block) {
          finish_tag(mod);
        } else if (mod == '-') {
          finish_tag('-');
        }
        return {};
      }
      char c = src_[pos_];
      size_t start = pos_;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        while (pos_ < n &&
               (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) {
          ++pos_;
        }
        push(TokKind::NAME, src_.substr(start, pos_ - start), start);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        REALM_TRY(lex_number());
      } else if (c == '\'' || c == '"') {
        REALM_TRY(lex_string());
      } else {
        static const char* const kOps2[] = {"//", "**", "==", "!=", ">=", "<="};
        std::string op;
        for (const char* o : kOps2) {
          if (src_.compare(pos_, 2, o) == 0) op = o;
        }
        if (op.empty()) {
          if (!std::strchr("+-/*%~[](){},.:|=<>;", c)) {
            return error_at(pos_, "unexpected character '", std::string(1, c), "'");
          }
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") ++open_brackets;
        if ((op == ")" || op == "]" || op == "}") && open_brackets > 0) --open_brackets;
        pos_ += op.size();
        push(TokKind::OP, op, start);
      }
    }
  }

  Status lex_number() {
    size_t start = pos_;
    auto digits = [&] {
      while (pos_ < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[pos_])) ||
                                    (src_[pos_] == '_' && pos_ + 1 < src_.size() &&
                                     std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))))) {
        ++pos_;
      }
    };
    digits();
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      digits();
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t save = pos_;
      ++pos_;
      if (pos_ < src_.size() && (src_[pos_] == '+' || src_[pos_] == '-')) ++pos_;
      if (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) {
        digits();
        is_float = true;
      } else {
        pos_ = save;
      }
    }
    std::string text;
    for (size_t i = start; i < pos_; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    Token t;
    set_pos(t, start);
    t.text = text;
    if (is_float) {
      t.kind = TokKind::FLOAT;
      t.fval = std::strtod(text.c_str(), nullptr);
    } else {
      t.kind = TokKind::INT;
      errno = 0;
      unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
      if (errno != 0 || v > static_cast<unsigned long long>(INT64_MAX)) {
        return error_at(start, "integer literal out of range: ", text);
      }
      t.ival = static_cast<int64_t>(v);
    }
    toks_.push_back(std::move(t));
    return {};
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // A string literal, decoded like Python's "unicode-escape" codec (what Jinja uses).
  Status lex_string() {
    size_t start = pos_;
    char quote = src_[pos_++];
    std::string out;
    const size_t n = src_.size();
    while (true) {
      if (pos_ >= n) return error_at(start, "unterminated string literal");
      char c = src_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= n) return error_at(start, "unterminated string literal");
      char e = src_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case '\n':
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'v':
          out += '\v';
          break;
        case 'x':
        case 'u':
        case 'U': {
          int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t v = 0;
          for (int k = 0; k < len; ++k) {
            int h = pos_ < n ? hex_value(src_[pos_]) : -1;
            if (h < 0)
              return error_at(pos_, "truncated \\", std::string(1, e), " escape in string");
            v = v * 16 + static_cast<char32_t>(h);
            ++pos_;
          }
          if (v > 0x10FFFF) return error_at(start, "invalid \\U escape in string");
          append_utf8(out, v);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t v = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && pos_ < n && src_[pos_] >= '0' && src_[pos_] <= '7'; ++k) {
              v = v * 8 + static_cast<char32_t>(src_[pos_++] - '0');
            }
            append_utf8(out, v);
          } else if (e == 'N') {
            return error_at(pos_ - 2, "\\N{...} escapes are not supported");
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    Token t;
    t.kind = TokKind::STRING;
    set_pos(t, start);
    t.text = std::move(out);
    toks_.push_back(std::move(t));
    return {};
  }

  void set_pos(Token& t, size_t offset) {
    // Line/column of `offset` (columns count bytes, from 1).
    while (line_pos_ < offset && line_pos_ < src_.size()) {
      if (src_[line_pos_] == '\n') {
        ++line_;
        line_start_ = line_pos_ + 1;
      }
      ++line_pos_;
    }
    t.line = line_;
    t.col = static_cast<int>(offset - line_start_) + 1;
  }

  void push(TokKind kind, std::string text, size_t offset) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    set_pos(t, offset);
    toks_.push_back(std::move(t));
  }

  void push_data(std::string data, size_t offset) {
    if (!data.empty()) push(TokKind::DATA, std::move(data), offset);
  }

  template <typename... Args>
  Error error_at(size_t offset, const Args&... args) {
    Token t;
    set_pos(t, offset);
    return make_error("template line ", t.line, ", column ", t.col, ": ", args...);
  }

  std::string src_;
  size_t pos_ = 0;
  std::vector<Token> toks_;
  size_t line_pos_ = 0;
  size_t line_start_ = 0;
  int line_ = 1;
};

}  // namespace

Expected<std::vector<Token>> lex(std::string_view source) {
  // Jinja splits on \r\n, \r and \n, rejoins with \n and drops one trailing newline
  // (keep_trailing_newline=False).
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  return Lexer(std::move(src)).run();
}

}  // namespace realm::jinja
