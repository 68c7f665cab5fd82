// Test support: the realm_* host imports of realm_guest.h implemented natively over a real
// engine::Engine and tok::Tokenizer, so the guest's own sources (compiled natively) can run
// requests in a unit test and be compared with engine::generate. Not the sandbox: pointers are
// native, and there is exactly one current shim per process (install()).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

namespace realm::guest::testing {

struct ShimEvent {
  int32_t kind;      // REALM_EMIT_TOKEN or REALM_EMIT_FINAL
  std::string json;  // as emitted
};

struct HostShim {
  engine::Engine* engine = nullptr;
  const tok::Tokenizer* tokenizer = nullptr;
  std::string chat_template;  // Jinja source ("" = ChatML fallback)
  std::string bos_text, eos_text;
  // emit() answers "client gone" once this many token events arrived (< 0: never).
  int gone_after = -1;
  std::vector<ShimEvent> events;
  std::map<int32_t, std::unique_ptr<engine::Session>> sessions;
  int32_t next_session = 1;
  int64_t decode_calls = 0;
};

// Makes `shim` the one the imports use (nullptr: none; imports then return REALM_E_INTERNAL).
void install(HostShim* shim);

}  // namespace realm::guest::testing
