// bench_tokenize: tokens/s tokenizing ~1 MB of English text with the llama-spm, llama-bpe and
// qwen2 vocabularies (or the GGUF files given). Usage:
//   bench_tokenize [--text FILE] [--bytes N] [--runs R] [VOCAB.gguf...]
// The text (default ../shared/models/reference/perplexity-text.txt) is repeated up to N bytes
// (default 1 MiB). Prints the best of R runs (default 3).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  const char* env = std::getenv("REALM_SHARED_DIR");
  std::string shared = env ? env : "../shared";
  std::string text_path = shared + "/models/reference/perplexity-text.txt";
  size_t target = 1 << 20;
  int runs = 3;
  std::vector<std::string> vocabs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--text" && i + 1 < argc) {
      text_path = argv[++i];
    } else if (a == "--bytes" && i + 1 < argc) {
      target = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else {
      vocabs.push_back(a);
    }
  }
  if (vocabs.empty()) {
    for (const char* v : {"llama-spm", "llama-bpe", "qwen2"}) {
      vocabs.push_back(shared + "/vocab/ggml-vocab-" + v + ".gguf");
    }
  }
  std::ifstream f(text_path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "bench_tokenize: cannot read %s\n", text_path.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string unit = ss.str();
  if (unit.empty()) return 1;
  std::string text;
  while (text.size() < target) text += unit;
  text.resize(target);

  std::printf("text: %s repeated to %zu bytes, best of %d runs\n", text_path.c_str(), text.size(),
              runs);
  std::printf("%-40s %10s %10s %12s %8s\n", "vocab", "tokens", "seconds", "tokens/s", "MB/s");
  for (const std::string& path : vocabs) {
    auto tok = realm::tok::Tokenizer::load(path);
    if (!tok) {
      std::fprintf(stderr, "bench_tokenize: %s\n", tok.error().message.c_str());
      return 1;
    }
    double best = 1e30;
    size_t n_tokens = 0;
    for (int r = 0; r < runs; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto ids = tok->encode(text, /*add_special=*/false, /*parse_special=*/false);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      n_tokens = ids.size();
      best = std::min(best, s);
    }
    std::string name = path.substr(path.find_last_of('/') + 1);
    std::printf("%-40s %10zu %10.3f %12.0f %8.2f\n", name.c_str(), n_tokens, best, n_tokens / best,
                text.size() / best / 1e6);
  }
  return 0;
}
