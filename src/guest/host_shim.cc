#include "guest/host_shim.h"

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "guest/realm_guest.h"
#include "tokenizer/chat_template.h"

namespace realm::guest::testing {
namespace {
HostShim* g_shim = nullptr;  // test-only: the C imports carry no context

int32_t sized_bytes(const std::string& s, char* buf, int32_t cap) {
  const auto n = static_cast<int32_t>(s.size());
  if (n <= cap) std::memcpy(buf, s.data(), s.size());
  return n;
}
}  // namespace

void install(HostShim* shim) {
  g_shim = shim;
}

}  // namespace realm::guest::testing

using realm::guest::testing::g_shim;
using realm::guest::testing::sized_bytes;

extern "C" {

int32_t realm_model_open(const char* name, int32_t name_len) {
  if (!g_shim) return REALM_E_INTERNAL;
  if (std::string(name, static_cast<size_t>(name_len)) == "denied") return REALM_E_DENIED;
  return 1;
}

int32_t realm_model_info(int32_t model, char* buf, int32_t cap) {
  if (!g_shim || model != 1) return REALM_E_HANDLE;
  const auto& v = g_shim->tokenizer->vocab();
  nlohmann::json j;
  j["n_vocab"] = g_shim->engine->model().hparams().n_vocab;
  j["n_ctx_train"] = g_shim->engine->model().hparams().n_ctx_train;
  j["bos"] = v.bos();
  j["eos"] = v.eos();
  j["eog"] = v.eog_ids();
  j["add_bos"] = v.add_bos();
  return sized_bytes(j.dump(), buf, cap);
}

int32_t realm_tokenize(int32_t model, const char* text, int32_t text_len, int32_t flags,
                       int32_t* out, int32_t out_cap) {
  if (!g_shim || model != 1) return REALM_E_HANDLE;
  const auto ids = g_shim->tokenizer->encode(std::string_view(text, static_cast<size_t>(text_len)),
                                             (flags & 1) != 0, (flags & 2) != 0);
  const auto n = static_cast<int32_t>(ids.size());
  if (n <= out_cap) std::memcpy(out, ids.data(), ids.size() * sizeof(int32_t));
  return n;
}

int32_t realm_token_piece(int32_t model, int32_t id, char* buf, int32_t cap) {
  if (!g_shim || model != 1) return REALM_E_HANDLE;
  const auto& v = g_shim->tokenizer->vocab();
  if (!v.valid(id)) return REALM_E_INVALID;
  std::string piece;
  v.append_piece(piece, id, false, 0);
  return sized_bytes(piece, buf, cap);
}

int32_t realm_chat_template(int32_t model, const char* msgs, int32_t msgs_len,
                            int32_t add_generation_prompt, char* out, int32_t out_cap) {
  if (!g_shim || model != 1) return REALM_E_HANDLE;
  auto messages =
      realm::chat::value_from_json_text(std::string_view(msgs, static_cast<size_t>(msgs_len)));
  if (!messages) return REALM_E_INVALID;
  realm::chat::ChatInputs in;
  in.messages = *messages;
  in.add_generation_prompt = add_generation_prompt != 0;
  in.bos_token = g_shim->bos_text;
  in.eos_token = g_shim->eos_text;
  auto text = realm::chat::render_chat(g_shim->chat_template.empty()
                                           ? std::string_view(realm::chat::kChatmlTemplate)
                                           : std::string_view(g_shim->chat_template),
                                       in);
  if (!text) return REALM_E_INVALID;
  return sized_bytes(*text, out, out_cap);
}

int32_t realm_session_open(int32_t model, int32_t n_ctx) {
  if (!g_shim || model != 1) return REALM_E_HANDLE;
  if (n_ctx <= 0) return REALM_E_INVALID;
  const int32_t h = g_shim->next_session++;
  g_shim->sessions[h] = g_shim->engine->open_session(n_ctx);
  return h;
}

int32_t realm_session_close(int32_t session) {
  if (!g_shim) return REALM_E_INTERNAL;
  return g_shim->sessions.erase(session) ? REALM_OK : REALM_E_HANDLE;
}

int32_t realm_session_truncate(int32_t session, int32_t n) {
  if (!g_shim) return REALM_E_INTERNAL;
  auto it = g_shim->sessions.find(session);
  if (it == g_shim->sessions.end()) return REALM_E_HANDLE;
  if (n < 0 || n > it->second->size()) return REALM_E_INVALID;
  it->second->truncate(n);
  return REALM_OK;
}

int32_t realm_decode(int32_t session, const int32_t* tokens, int32_t n_tokens, float* logits,
                     int32_t logits_cap) {
  if (!g_shim) return REALM_E_INTERNAL;
  auto it = g_shim->sessions.find(session);
  if (it == g_shim->sessions.end()) return REALM_E_HANDLE;
  if (n_tokens <= 0) return REALM_E_INVALID;
  const auto n_vocab = static_cast<int32_t>(g_shim->engine->model().hparams().n_vocab);
  if (logits_cap < n_vocab) return REALM_E_NOSPACE;
  g_shim->decode_calls++;
  auto r = g_shim->engine->decode(
      *it->second, std::vector<int32_t>(tokens, tokens + static_cast<size_t>(n_tokens)));
  if (!r) return REALM_E_LIMIT;
  std::memcpy(logits, r->logits.data(), static_cast<size_t>(n_vocab) * sizeof(float));
  return n_vocab;
}

int32_t realm_emit(int32_t kind, const char* ptr, int32_t len) {
  if (!g_shim) return REALM_E_INTERNAL;
  if (kind != REALM_EMIT_TOKEN && kind != REALM_EMIT_FINAL) return REALM_E_INVALID;
  g_shim->events.push_back({kind, std::string(ptr, static_cast<size_t>(len))});
  if (g_shim->gone_after >= 0) {
    int n = 0;
    for (const auto& e : g_shim->events) n += e.kind == REALM_EMIT_TOKEN;
    if (n >= g_shim->gone_after) return REALM_EMIT_CLIENT_GONE;
  }
  return REALM_OK;
}

void realm_log(int32_t, const char*, int32_t) {}

double realm_clock_ms(void) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // extern "C"
