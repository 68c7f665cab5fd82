// libFuzzer target for the GGUF reader: any input parses or fails cleanly; a file that parses can
// be written back and parsed again with the same metadata and tensors.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "gguf/reader.h"
#include "gguf/writer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = realm::gguf::GgufFile::parse(std::span<const uint8_t>(data, size));
  if (!f.ok()) return 0;
  // Touch everything the reader exposes.
  uint64_t sum = 0;
  for (const auto& kv : f->metadata()) sum += kv.key.size() + kv.value.size();
  for (const auto& t : f->tensors()) {
    if (t.n_bytes > 0) sum += t.data[0] + t.data[t.n_bytes - 1];
  }
  auto bytes = realm::gguf::GgufWriter::copy_of(*f).to_bytes();
  auto g = realm::gguf::GgufFile::parse(bytes);
  if (!g.ok() || g->metadata().size() != f->metadata().size() ||
      g->tensors().size() != f->tensors().size()) {
    std::abort();  // the writer produced something the reader rejects
  }
  return sum == 0xdeadbeef ? 1 : 0;
}
