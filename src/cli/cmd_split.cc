// `realm split IN.gguf OUT_PREFIX [--max-tensors N] [--max-size SIZE]`: writes IN as shards
// OUT_PREFIX-00001-of-0000N.gguf ... in llama.cpp's gguf-split layout, which every command that
// takes a model loads as one (give any shard).
#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "gguf/reader.h"
#include "gguf/split.h"

namespace realm::cli {
namespace {

struct SplitArgs {
  std::string in, prefix, max_size;
  uint64_t max_tensors = 128;
};

// "500M", "2G", "4096": bytes.
bool parse_size(const std::string& s, uint64_t& out) {
  if (s.empty()) return false;
  uint64_t mult = 1;
  std::string digits = s;
  switch (s.back()) {
    case 'K':
    case 'k':
      mult = 1ull << 10;
      digits.pop_back();
      break;
    case 'M':
    case 'm':
      mult = 1ull << 20;
      digits.pop_back();
      break;
    case 'G':
    case 'g':
      mult = 1ull << 30;
      digits.pop_back();
      break;
    default:
      break;
  }
  if (digits.empty() || digits.size() > 12 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  out = std::stoull(digits) * mult;
  return out > 0;
}

}  // namespace

void add_split_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<SplitArgs>();
  auto* cmd = app.add_subcommand("split", "Write a GGUF model as shards (llama.cpp's gguf-split)");
  cmd->add_option("in", a->in, "GGUF file")->required();
  cmd->add_option("prefix", a->prefix, "Output prefix: PREFIX-00001-of-0000N.gguf ...")->required();
  cmd->add_option("--max-tensors", a->max_tensors, "Tensors per shard at most")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20));
  cmd->add_option("--max-size", a->max_size, "Tensor bytes per shard at most (e.g. 500M, 2G)");
  cmd->callback([a, &exit_code] {
    uint64_t max_bytes = 0;
    if (!a->max_size.empty() && !parse_size(a->max_size, max_bytes)) {
      std::cerr << "realm: error: --max-size wants a size such as 500M or 2G, got '" << a->max_size
                << "'\n";
      exit_code = 2;
      return;
    }
    auto in = gguf::GgufFile::open(a->in);
    if (!in) {
      std::cerr << "realm: error: " << in.error().message << "\n";
      exit_code = 1;
      return;
    }
    auto paths = gguf::write_split(*in, a->prefix, a->max_tensors, max_bytes);
    if (!paths) {
      std::cerr << "realm: error: " << a->in << ": " << paths.error().message << "\n";
      exit_code = 1;
      return;
    }
    for (const std::string& p : *paths) std::cout << p << "\n";
    exit_code = 0;
  });
}

}  // namespace realm::cli
