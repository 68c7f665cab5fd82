// The sandbox: every tenant runs as a WebAssembly guest (guest ABI v1, docs/abi.md) over models
// loaded once in the host and shared by all tenants. See docs/sandbox.md for the execution model.
//
// Execution model: a pool of worker threads, each owning one isolate. A request is queued and run
// by the next free worker, in that worker's instance of the tenant's module (created on first use
// and cached per worker). The guest drives generation itself; when it calls the `decode` import
// its worker blocks while the model's engine batches the steps of every waiting guest into one
// forward pass. The pool size is the number of requests that can run (or wait in decode) at once.
//
// A trap, timeout, memory-limit hit, stack overflow or ABI misuse ends that request with an error
// naming the cause; the instance is discarded (the next request of that tenant on that worker
// creates a new one) and the host and every other tenant keep running.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "model/model.h"
#include "sandbox/limits.h"
#include "sandbox/wasm_engine.h"
#include "util/expected.h"

namespace realm::sandbox {

struct SandboxOptions {
  // Worker threads (one isolate each): requests running at once, e.g. waiting together in decode.
  int n_workers = 32;
  // Tenant instances each worker keeps (least recently used ones are dropped past this).
  int instances_per_worker = 64;
  model::KvType kv_type = model::KvType::F16;
  // Per-tenant limits; default: RecordLimits (the values in each TenantRecord).
  std::shared_ptr<Limits> limits;
  // Tenant log lines (the `log` import, the guest's stdout/stderr); default: stderr.
  std::function<void(const std::string& tenant, int level, std::string_view text)> log;
  EngineOptions engine;
};

enum class RequestError {
  NONE,
  UNKNOWN_TENANT,
  BAD_MODULE,       // the module cannot be instantiated (imports, exports, memory)
  TRAP,             // the guest trapped
  TIMEOUT,          // guest code ran past the time limit of one call
  MEMORY_LIMIT,     // the guest's linear memory reached its cap
  STACK_OVERFLOW,   // the guest's call stack overflowed
  ENGINE_LIMIT,     // the isolate's own heap reached its limit
  ABI_MISUSE,       // the guest broke the ABI (bad export result, no final result, ...)
  GUEST_ERROR,      // realm_generate returned an error status
  TOKEN_LIMIT,      // the request's token budget was exhausted
  OUTPUT_LIMIT,     // the request emitted more than its output cap
  HOST_WORK_LIMIT,  // host work done for the guest (tokenize, templates, events) past its budget
  PROC_EXIT,        // the guest called WASI proc_exit
  CANCELLED,        // the client went away
  INTERNAL,         // a host-side failure
};
// "time limit", "memory limit", ...
std::string_view request_error_name(RequestError e);

struct RequestResult {
  RequestError error = RequestError::NONE;
  std::string message;     // when error != NONE: the cause, with details
  std::string final_json;  // the guest's final result event (emit kind 2)
  uint64_t n_events = 0;   // token events emitted
  uint64_t output_bytes = 0;
  int64_t tokens_decoded = 0;  // tokens run through decode (prompt included)
  // The prompt as the host counts it: tokens decoded before the guest emitted its first token
  // event (all of them when it emitted none). Usage is billed from this and n_events, never from
  // counts a guest writes in its final result.
  int64_t prompt_tokens = 0;
  // Of prompt_tokens, those whose keys and values came from the tenant's prefix cache.
  int64_t cached_tokens = 0;
  bool instance_discarded = false;  // the tenant's instance was dropped after this request
  bool instance_created = false;    // this request created the instance it ran in
  double instance_ready_ms = 0;     // when created: instantiate + _initialize + realm_new
  double guest_ms = 0;              // wall time of the request in the worker, minus time in decode
  double decode_ms = 0;             // time blocked in the decode import (batched forward passes)
  bool ok() const { return error == RequestError::NONE; }
};

// An event from the guest: kind 1 (token event JSON) or 2 (final result JSON). Called on the
// worker thread. Return false when the client is gone (the guest is told to stop).
using EventCallback = std::function<bool(int kind, std::string_view json)>;

class Sandbox {
 public:
  static Expected<std::unique_ptr<Sandbox>> create(SandboxOptions options = {});
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // Shares a loaded model with the tenants under `name` (its tokenizer and chat template are read
  // from the file; one engine batches every tenant's steps on it). `chat_template`: Jinja2 source
  // used instead of the file's ("": the file's, ChatML when it has none).
  Status add_model(const std::string& name, std::shared_ptr<const model::Model> model,
                   engine::EngineOptions engine_options = {},
                   const std::string& chat_template = "");

  // Stops sharing a model: model_open of its name fails from now on; requests running on it keep
  // their sessions (and the model's memory) until they end; every tenant instance created before
  // is replaced at its next request (its guest may hold the model's handle). NOT_FOUND if absent.
  Status remove_model(const std::string& name);

  // The prompt of a request (docs/abi.md: `prompt`, or `messages` rendered through the model's
  // chat template with a generation prompt) tokenized as the default guest does, and the model's
  // training context. The server counts a prompt with it before admitting the request.
  struct PromptInfo {
    std::vector<int32_t> ids;
    int64_t n_ctx_train = 0;
  };
  Expected<PromptInfo> prompt_tokens(const std::string& model, const nlohmann::json& request) const;
  // The text of token `id` of a model (its raw piece; special tokens by their text).
  Expected<std::string> token_piece(const std::string& model, int32_t id) const;

  // Compiles a guest module (shared by every worker and tenant that uses it). Checks the ABI
  // exports and that every import is one the host provides.
  Expected<std::shared_ptr<const WasmModule>> compile_module(std::span<const uint8_t> bytes);
  Expected<std::shared_ptr<const WasmModule>> load_module(const std::string& path);

  // Adds (or replaces) a tenant running `module`.
  Status add_tenant(TenantRecord record, std::shared_ptr<const WasmModule> module);

  // Runs one request (JSON, docs/abi.md) for the tenant on a worker. `cancel` (optional) stops
  // it: pass it to cancel() (or set it) and a queued request ends as CANCELLED without starting, a
  // running one sees "client gone" / REALM_E_CANCELLED and its queued engine steps are withdrawn.
  // Requests still queued when the sandbox is destroyed end as CANCELLED, unrun.
  std::future<RequestResult> submit(const std::string& tenant, std::string request_json,
                                    EventCallback on_event,
                                    std::shared_ptr<std::atomic<bool>> cancel = nullptr);
  // Sets `flag` and removes the requests queued with it (their results: CANCELLED).
  void cancel(const std::shared_ptr<std::atomic<bool>>& flag);
  // Requests waiting for a worker.
  size_t queued() const;
  // submit() and wait.
  RequestResult run_request(const std::string& tenant, std::string request_json,
                            EventCallback on_event);

  const Limits& limits() const;
  int n_workers() const;
  // Instances created so far (all workers).
  uint64_t instances_created() const;
  // The shared model's engine: passes and tokens run (batching across tenants), sessions, KV
  // blocks, preemptions, prefix-cache lookups.
  Expected<engine::EngineStats> model_stats(std::string_view model) const;

  struct Impl;

 private:
  explicit Sandbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The host's import table of guest ABI v1 (module "realm") and the WASI subset
// (module "wasi_snapshot_preview1"), for inspection and tests.
std::vector<std::string> host_import_names();

}  // namespace realm::sandbox
