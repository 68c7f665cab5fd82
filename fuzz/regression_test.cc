// Replays every input in fuzz/regressions/gguf (crashers and edge cases found so far) through the
// fuzz target's checks; each must parse or fail cleanly.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

TEST(GgufFuzzRegressions, ReplayCorpus) {
  std::filesystem::path dir = std::filesystem::path(REALM_SOURCE_DIR) / "fuzz/regressions/gguf";
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename() == "README.md") continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    ++n;
  }
  EXPECT_GT(n, 0u);
}
