#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/uchar.h>

#include "tokenizer/unicode.h"

namespace realm::tok {

namespace {

// The contraction alternatives of the Llama 3 / Qwen regexes, case-insensitive as in the
// original `(?i:'s|'t|...)` but written out the way llama.cpp adapts it.
#define REALM_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define REALM_GPT2_RE \
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

std::vector<std::string> PreTokenizer::regexes_for(PreType type) {
  switch (type) {
    case PreType::LLAMA3:
    case PreType::DBRX:
    case PreType::SMAUG:
    case PreType::CHATGLM4:
      return {
          REALM_CONTRACTIONS
          "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
          "\\s+(?!\\S)|\\s+"};
    case PreType::DEEPSEEK_LLM:
      return {
          "[\r\n]",
          "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf"
          "\xc7\x84-\xca\x93\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd"
          "\xcd\xbf\xce\x86\xce\x88-\xce\x8a\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-"
          "\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1"
          "\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf\xe1"
          "\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8\x80-\xe1"
          "\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d\xe1"
          "\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd\xe1"
          "\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf\x84\xe1"
          "\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1"
          "\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87\xe2"
          "\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6\xe2"
          "\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2"
          "\x84\xbf\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2"
          "\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3\xea"
          "\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea"
          "\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac\x86\xef"
          "\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0\x90\x90\x80-"
          "\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0\x90\x93\xbb\xf0"
          "\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-\xf0\x91"
          "\xa3\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
          "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f"
          "\xe3\x80\x80-\xe3\x80\x82]+",
          "\\s+$",
          "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
          "\\p{N}+",
      };
    case PreType::DEEPSEEK3_LLM:
      return {
          "\\p{N}{1,3}",
          "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
          "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}"
          "\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"};
    case PreType::DEEPSEEK_CODER:
      return {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
              "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
              "\\p{N}"};
    case PreType::FALCON:
      return {"[\\p{P}\\$\\+<=>\\^~\\|`]+", REALM_GPT2_RE, "[0-9][0-9][0-9]"};
    case PreType::STARCODER:
    case PreType::REFACT:
    case PreType::COMMAND_R:
    case PreType::SMOLLM:
    case PreType::CODESHELL:
    case PreType::EXAONE:
    case PreType::MINERVA:
      return {"\\p{N}", REALM_GPT2_RE};
    case PreType::GPT2:
    case PreType::MPT:
    case PreType::OLMO:
      return {REALM_GPT2_RE};
    case PreType::STABLELM2:
    case PreType::QWEN2:
      return {REALM_CONTRACTIONS
              "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
              "\\s+(?!\\S)|\\s+"};
    case PreType::QWEN35:
      return {REALM_CONTRACTIONS
              "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
    case PreType::PORO:
    case PreType::BLOOM:
    case PreType::GPT3_FINNISH:
      return {
          " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94"
          "\xd8\x8c)]+"};
    case PreType::TEKKEN:
      // The original tokenizer.json regex (PCRE2 has the letter subcategories).
      return {
          "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
          "+|"
          "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
          "*|"
          "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
    case PreType::CHAMELEON:
      return {"<sentinel:[0-9]+>",
              "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
              "([\\t\\n]|    |  )",
              "\\p{N}",
              "[\\p{P}!-/:-@\\[-`{-~]",
              "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"};
    case PreType::GPT4O:
      return {
          "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}"
          "\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{"
          "Lo}"
          "\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| "
          "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
    case PreType::DEFAULT:
    default:
      return {"[\\p{P}\\$\\+<=>\\^~\\|]+", REALM_GPT2_RE, "\\p{N}+", "[0-9][0-9][0-9]"};
  }
}

struct PreTokenizer::Impl {
  std::vector<std::unique_ptr<pcre2_code, CodeDeleter>> codes;
};

PreTokenizer::PreTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PreTokenizer::~PreTokenizer() = default;

Expected<std::unique_ptr<PreTokenizer>> PreTokenizer::create(PreType type) {
  return create(regexes_for(type));
}

Expected<std::unique_ptr<PreTokenizer>> PreTokenizer::create(
    const std::vector<std::string>& regexes) {
  auto impl = std::make_unique<Impl>();
  for (const std::string& re : regexes) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    // ECMAScript semantics as in llama.cpp's std::regex: '$' only at the very end.
    pcre2_code* code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.data()), re.size(),
                      PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_off, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      return make_error("pre-tokenizer regex '", re, "' at offset ", err_off, ": ",
                        reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
    impl->codes.emplace_back(code);
  }
  return std::unique_ptr<PreTokenizer>(new PreTokenizer(std::move(impl)));
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  const std::vector<uint32_t> cpts = utf8_to_cpts(text);
  // The regex subject: valid UTF-8 of the code points (surrogates and values PCRE2 rejects become
  // U+FFFD).
  std::string subject;
  subject.reserve(text.size() + 8);
  std::vector<uint32_t> byte_to_cpt;  // byte offset in subject -> code point index
  byte_to_cpt.reserve(text.size() + 1);
  std::vector<size_t> cpt_to_byte(cpts.size() + 1);
  for (size_t i = 0; i < cpts.size(); ++i) {
    uint32_t c = cpts[i];
    if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = kReplacementChar;
    // llama.cpp matches every non-ASCII whitespace character (White_Space) as a vertical tab
    // (its collapsed / wregex subjects), so a class such as deepseek's [　-。] never sees U+3000.
    if (c >= 0x80 && c <= 0x10FFFF &&
        u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE)) {
      c = 0x0B;
    }
    cpt_to_byte[i] = subject.size();
    append_utf8(subject, c);
    while (byte_to_cpt.size() < subject.size()) byte_to_cpt.push_back(static_cast<uint32_t>(i));
  }
  cpt_to_byte[cpts.size()] = subject.size();
  byte_to_cpt.push_back(static_cast<uint32_t>(cpts.size()));

  std::vector<size_t> offsets = {cpts.size()};  // chunk lengths in code points
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(pcre2_match_data_create(1, nullptr));
  for (const auto& code : impl_->codes) {
    std::vector<size_t> next;
    next.reserve(offsets.size() * 2);
    size_t start = 0;  // code point index of the chunk
    for (size_t len : offsets) {
      const size_t b0 = cpt_to_byte[start], b1 = cpt_to_byte[start + len];
      const auto* subj = reinterpret_cast<PCRE2_SPTR>(subject.data() + b0);
      const PCRE2_SIZE n = b1 - b0;
      PCRE2_SIZE pos = 0;       // search position (bytes, chunk-relative)
      size_t last_end = start;  // code point index where the previous piece ended
      uint32_t opts = 0;
      while (pos <= n) {
        int rc =
            pcre2_match(code.get(), subj, n, pos, opts | PCRE2_NO_UTF_CHECK, md.get(), nullptr);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
          // The JIT ran out of its stack (very long runs): redo this match with the interpreter,
          // which keeps its backtracking state on the heap.
          rc = pcre2_match(code.get(), subj, n, pos, opts | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                           md.get(), nullptr);
        }
        if (rc < 0) {
          if (opts != 0 && pos < n) {
            // After an empty match: advance one character and search normally.
            opts = 0;
            pos += utf8_len(static_cast<char>(subj[pos]));
            continue;
          }
          break;
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        const size_t ms = byte_to_cpt[b0 + ov[0]], me = byte_to_cpt[b0 + ov[1]];
        if (ms > last_end) next.push_back(ms - last_end);
        next.push_back(me - ms);
        last_end = me;
        if (ov[1] == ov[0]) {
          opts = PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED;
        } else {
          opts = 0;
        }
        pos = ov[1];
      }
      if (start + len > last_end) next.push_back(start + len - last_end);
      start += len;
    }
    offsets = std::move(next);
  }

  // Words from the original code points, each byte mapped to its byte-level code point.
  std::vector<std::string> words;
  words.reserve(offsets.size());
  size_t start = 0;
  std::string raw;
  for (size_t len : offsets) {
    raw.clear();
    for (size_t i = start; i < start + len; ++i) append_utf8(raw, cpts[i]);
    start += len;
    std::string word;
    word.reserve(raw.size() * 2);
    for (unsigned char b : raw) append_utf8(word, byte_to_gpt2_cpt(b));
    words.push_back(std::move(word));
  }
  return words;
}

}  // namespace realm::tok
