// Writes small seed inputs for gguf_fuzz from real GGUF files: each file's metadata with arrays cut
// to a few elements and its tensors shrunk to one block, so the seeds stay under libFuzzer's
// max_len while keeping every structure of the real file.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "gguf/writer.h"

using namespace realm::gguf;

namespace {

Value shrink(const Value& v) {
  if (!v.is_array()) return v;
  uint64_t n = std::min<uint64_t>(v.size(), 4);
  if (v.elem_type() == ValueType::STRING) {
    return Value::string_array({v.strings().begin(), v.strings().begin() + n});
  }
  if (v.elem_type() == ValueType::ARRAY) {
    std::vector<Value> items;
    for (uint64_t i = 0; i < n; ++i) items.push_back(shrink(v.arrays()[i]));
    return Value::array_of_arrays(std::move(items));
  }
  uint64_t bytes = n * value_type_size(v.elem_type());
  return Value::numeric_array(v.elem_type(), {v.raw().begin(), v.raw().begin() + bytes});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: make_seeds OUT_DIR FILE.gguf...\n");
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  for (int i = 2; i < argc; ++i) {
    auto f = GgufFile::open(argv[i]);
    if (!f.ok()) {
      std::fprintf(stderr, "skip %s: %s\n", argv[i], f.error().message.c_str());
      continue;
    }
    GgufWriter w(f->version());
    for (const auto& kv : f->metadata()) w.add_kv(kv.key, shrink(kv.value));
    size_t kept = 0;
    for (const auto& t : f->tensors()) {
      if (kept++ == 4) break;
      uint32_t block = type_layout(t.type).block_size;
      w.add_tensor(t.name, t.type, {block}, t.bytes().first(type_layout(t.type).type_size));
    }
    std::string out =
        std::string(argv[1]) + "/" + std::filesystem::path(argv[i]).stem().string() + ".seed.gguf";
    if (!w.write_file(out).ok()) return 1;
  }
  return 0;
}
