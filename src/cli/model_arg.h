// The one way commands turn a -m/MODEL argument into a GGUF file: a file path as given, else a
// model pulled into the store (hub::resolve_model, docs/models.md).
#pragma once

#include <filesystem>
#include <iostream>
#include <string>

#include "hub/store.h"
#include "model/model.h"

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

// How to load a resolved model file: a pulled model's packed weights are cached in its store
// entry (model/pack_cache.h), so its second start maps them instead of packing; a file outside
// the store is packed in memory.
inline model::LoadOptions load_options_for(const std::string& path) {
  model::LoadOptions o;
  std::error_code ec;
  const auto dir =
      std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec).parent_path();
  const auto store = std::filesystem::weakly_canonical(hub::models_dir(), ec);
  if (!ec && dir.parent_path() == store && std::filesystem::exists(dir / "manifest.json", ec)) {
    o.pack_cache_dir = dir.string();
  }
  return o;
}

}  // namespace realm::cli
