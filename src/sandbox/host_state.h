// Internal to the sandbox: the host-side state behind one guest instance and one request, the
// shared host models, and the host import table (host_imports.cc). Not included by other layers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "sandbox/realm_abi.h"
#include "sandbox/sandbox.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace realm::sandbox {

// A model shared by every tenant: weights, tokenizer, chat template and one batching engine.
struct HostModel {
  std::string name;
  std::shared_ptr<const model::Model> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::unique_ptr<engine::Engine> engine;
  std::optional<chat::ModelChatTemplate> chat;  // absent when the file's template is unreadable
  std::string info_json;
  int32_t n_vocab = 0;

  // `chat_template`: Jinja2 source used instead of the file's ("": the file's, or ChatML when it
  // has none).
  static Expected<std::shared_ptr<HostModel>> create(std::string name,
                                                     std::shared_ptr<const model::Model> model,
                                                     engine::EngineOptions engine_options,
                                                     const std::string& chat_template = "");
  // Renders the chat template for a JSON array of {role, content} (or {"messages": [...], ...}).
  Expected<std::string> render_chat(std::string_view messages_json,
                                    bool add_generation_prompt) const;
  // The prompt as the default guest builds it (docs/abi.md): `text` tokenized with BOS per the
  // model and special-token text parsed; a chat prompt loses a doubled BOS.
  std::vector<int32_t> prompt_ids(std::string_view text, bool chat) const;
};

struct Tenant {
  TenantRecord record;
  std::shared_ptr<const WasmModule> module;
  uint64_t generation = 0;  // changes when the tenant is replaced: cached instances are dropped
};

// Host-side handles, typed by kind: a slot index (+1) in bits 0..11, the slot's generation in bits
// 12..26 and the kind in bits 27..30, so a handle is > 0, a handle of another kind or a stale or
// forged one finds nothing, and a slot whose generation would wrap is retired instead of reused:
// no handle is ever issued twice by one table. (At most 4095 live handles; a table whose slots are
// all retired, after ~134M handles, issues none: insert() returns 0.)
template <class T, uint32_t kKind>
class HostHandles {
  static_assert(kKind >= 1 && kKind <= 15);
  static constexpr uint32_t kMaxSlots = 0xFFF, kMaxGeneration = 0x7FFF;

 public:
  int32_t insert(T value) {
    uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      if (slots_.size() >= kMaxSlots) return 0;
      index = static_cast<uint32_t>(slots_.size());
      slots_.push_back({});
    }
    Slot& s = slots_[index];
    s.value = std::move(value);
    s.live = true;
    return static_cast<int32_t>(kKind << 27 | s.generation << 12 | (index + 1));
  }
  T* find(int32_t handle) {
    if (handle <= 0) return nullptr;
    const auto h = static_cast<uint32_t>(handle);
    if (h >> 27 != kKind) return nullptr;
    const uint32_t index = (h & 0xFFF) - 1;
    const uint32_t gen = (h >> 12) & kMaxGeneration;
    if (index >= slots_.size()) return nullptr;
    Slot& s = slots_[index];
    if (!s.live || s.generation != gen) return nullptr;
    return &*s.value;
  }
  bool erase(int32_t handle) {
    if (!find(handle)) return false;
    release(static_cast<uint32_t>(handle & 0xFFF) - 1);
    return true;
  }
  template <class F>
  void for_each(F&& f) {
    for (auto& s : slots_) {
      if (s.live) f(*s.value);
    }
  }
  void clear() {
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].live) release(i);
    }
  }

 private:
  struct Slot {
    std::optional<T> value;
    uint32_t generation = 1;
    bool live = false;
  };
  void release(uint32_t index) {
    Slot& s = slots_[index];
    s.value.reset();
    s.live = false;
    if (s.generation < kMaxGeneration) {
      ++s.generation;
      free_.push_back(index);
    }  // else retired: its handles stay stale for good
  }
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
};

// Handle kinds (bits 27..30 of a host handle).
inline constexpr uint32_t kModelHandle = 1, kSessionHandle = 2;

struct OpenSession {
  std::shared_ptr<const HostModel> model;
  std::unique_ptr<engine::Session> session;
};

// One request in flight in an instance.
// Guest text made safe for host logs and messages: one line, control bytes and invalid UTF-8
// shown as escapes (\n, \xNN, \u00NN for C1 controls), at most `max_bytes` of input.
std::string escape_guest_text(std::string_view text, size_t max_bytes = 4096);

struct Request {
  const EventCallback* on_event = nullptr;
  std::shared_ptr<std::atomic<bool>> cancel;
  bool client_gone = false;
  int64_t token_budget = 0, tokens_used = 0;
  int64_t tokens_before_first_event = -1;  // tokens_used when the first token event came
  int64_t cached_tokens = 0;               // of the prompt: reused from the prefix cache
  uint64_t max_output = 0, max_event = 0, max_log = 0;
  uint64_t output_bytes = 0, log_bytes = 0, n_events = 0;
  bool final_emitted = false;
  std::string final_json;
  double decode_ms = 0;
  // The first limit hit during the request: the request's error, whatever the guest returns.
  RequestError limit_error = RequestError::NONE;
  std::string limit_message;
  HostHandles<OpenSession, kSessionHandle> sessions;

  bool cancelled() const { return client_gone || (cancel && cancel->load()); }
  // Host CPU time spent on the guest's behalf (Limits::host_time).
  int64_t host_ns = 0, host_ns_budget = 0;
};

// Everything a host import needs for one instance (the instance's `user` pointer).
struct InstanceState {
  Sandbox::Impl* sandbox = nullptr;
  std::shared_ptr<const Tenant> tenant;
  Limits* limits = nullptr;
  std::unique_ptr<WasmInstance> wasm;
  int32_t guest_handle = 0;
  // Weak: an unloaded model's memory is not held by idle instances (Sandbox::remove_model); the
  // sessions of a request in flight hold it until they close.
  HostHandles<std::weak_ptr<const HostModel>, kModelHandle> models;
  uint64_t models_epoch = 0;  // Sandbox models_epoch when created: older instances are replaced
  Request* request = nullptr;
  // realm_generate is running (the request imports work only then: not in realm_alloc, realm_free
  // or realm_last_error, even while a request is being set up or taken down).
  bool in_generate = false;
  bool generating() const { return request != nullptr && in_generate; }
  uint64_t idle_log_bytes = 0;  // log bytes outside requests (instance creation)
  int64_t idle_host_ns = 0;     // host work outside requests (instance creation)
  // Log rate: a token bucket of lines (refilled at kLogLinesPerSecond, at most kLogBurst).
  double log_tokens = 100;
  std::chrono::steady_clock::time_point log_refill = std::chrono::steady_clock::now();
  // Set by a host function that traps the guest (an exceeded limit, proc_exit, a host fault).
  RequestError host_trap_kind = RequestError::NONE;
  // Why the last host import that returned an error code failed, in this request (or, before
  // the first, while the instance was created); "" when none has. Readable by the guest through
  // realm.host_error, and added to the message of a request that fails.
  std::string host_error;
  std::mt19937_64 rng{std::random_device{}()};

  ~InstanceState();
  void begin_request(Request* r);
  // Closes the request's sessions (returning their slots to the limits).
  void end_request();
  // Whether the guest memory has (nearly) reached its cap.
  bool memory_at_cap() const;
  // The guest's realm_last_error(handle) text ("" when unavailable); bounded. A fault in these
  // calls sets `faulted` (the instance is then discarded).
  std::string last_error(int32_t handle);
  bool faulted = false;
};

std::vector<HostImport> make_host_imports();

// Hooks into the sandbox (sandbox.cc).
std::shared_ptr<const HostModel> find_host_model(Sandbox::Impl* impl, std::string_view name);
void tenant_log(Sandbox::Impl* impl, const std::string& tenant, int level, std::string_view text);
model::KvType kv_type(Sandbox::Impl* impl);

}  // namespace realm::sandbox
