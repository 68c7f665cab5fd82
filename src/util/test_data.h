// Where tests find the shared test data (models, tokenizer vectors): $REALM_SHARED_DIR, else the
// REALM_SHARED_DIR definition that realm_test() compiles in. For tests only.
#pragma once

#include <cstdlib>
#include <string>

namespace realm::test_data {

inline std::string shared_dir() {
  const char* env = std::getenv("REALM_SHARED_DIR");
  return env && *env ? env : REALM_SHARED_DIR;
}

}  // namespace realm::test_data
