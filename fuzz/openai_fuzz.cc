// libFuzzer target for the server's request validation (src/server/openai.cc): any body for
// either endpoint gives a request or an error with an HTTP status, never a crash; an accepted
// request's guest JSON serializes (valid UTF-8, no exceptions).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/openai.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (auto ep : {realm::server::Endpoint::COMPLETIONS, realm::server::Endpoint::CHAT}) {
    auto r = realm::server::parse_gen_request(ep, body);
    if (auto* e = std::get_if<realm::server::ApiError>(&r)) {
      if (e->status < 400 || e->status > 599) __builtin_trap();
      (void)realm::server::error_body(*e);
    } else {
      (void)std::get<realm::server::GenRequest>(r).guest.dump();
    }
  }
  return 0;
}
