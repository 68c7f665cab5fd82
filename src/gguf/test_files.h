// Lists the GGUF files in the shared test data (../shared, or $REALM_SHARED_DIR).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "util/test_data.h"

namespace realm::gguf::testing {

inline std::string shared_dir() {
  return test_data::shared_dir();
}

// Every *.gguf under models/, models/quant/ and vocab/.
inline std::vector<std::string> shared_gguf_files() {
  std::vector<std::string> out;
  for (const char* sub : {"models", "models/quant", "vocab"}) {
    std::filesystem::path dir = std::filesystem::path(shared_dir()) / sub;
    if (!std::filesystem::is_directory(dir)) continue;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      if (e.path().extension() == ".gguf") out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace realm::gguf::testing
