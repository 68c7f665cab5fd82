// Where tests find the shared test data (models, tokenizer vectors): $REALM_SHARED_DIR, else the
// REALM_SHARED_DIR definition that realm_test() compiles in. For tests only.
#pragma once

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace realm::test_data {

inline std::string shared_dir() {
  const char* env = std::getenv("REALM_SHARED_DIR");
  return env && *env ? env : REALM_SHARED_DIR;
}

// The bytes of a file, or nullopt when it cannot be opened (tests assert on that, so a missing
// data file fails instead of testing nothing).
inline std::optional<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The texts of a llama.cpp tokenizer test input (.inp): separated by "\n__ggml_vocab_test__\n".
inline std::vector<std::string> split_vocab_inputs(const std::string& raw) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  for (size_t pos = 0, next; pos < raw.size(); pos = next + sep.size()) {
    next = raw.find(sep, pos);
    if (next == std::string::npos) next = raw.size();
    out.push_back(raw.substr(pos, next - pos));
  }
  return out;
}

}  // namespace realm::test_data
