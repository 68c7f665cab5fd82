// The one way commands turn a -m/MODEL argument into a GGUF file: a file path as given, else a
// model pulled into the store (hub::resolve_model, docs/models.md).
#pragma once

#include <iostream>
#include <string>

#include "hub/store.h"

namespace realm::cli {

// Replaces `model` with the file it names. On failure prints "realm: error: ..." (neither a file
// nor a pulled model), sets exit_code to 1 and returns false.
inline bool resolve_model_arg(std::string& model, int& exit_code) {
  auto r = hub::resolve_model(model);
  if (!r) {
    std::cerr << "realm: error: " << r.error().message << "\n";
    exit_code = 1;
    return false;
  }
  model = r->path;
  return true;
}

}  // namespace realm::cli
