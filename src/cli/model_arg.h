// The one way commands turn a -m/MODEL argument into a GGUF file: a file path as given, else a
// model pulled into the store (hub::resolve_model, docs/models.md).
#pragma once

#include <iostream>
#include <string>

#include "hub/store.h"
#include "model/model.h"

namespace realm::cli {

// Replaces `model` with the file it names and, when `load` is given, sets how to load it: a
// pulled model's packed weights are cached in its store entry (model/pack_cache.h), so its second
// start maps them instead of packing; a file outside the store is packed in memory. On failure
// prints "realm: error: ..." (neither a file nor a pulled model), sets exit_code to 1 and returns
// false.
inline bool resolve_model_arg(std::string& model, int& exit_code,
                              model::LoadOptions* load = nullptr) {
  auto r = hub::resolve_model(model);
  if (!r) {
    std::cerr << "realm: error: " << r.error().message << "\n";
    exit_code = 1;
    return false;
  }
  model = r->path;
  if (load != nullptr) {
    *load = {};
    if (r->in_store) load->pack_cache_dir = r->entry_dir;
    if (r->sha256) load->source_sha256 = *r->sha256;
  }
  return true;
}

}  // namespace realm::cli
