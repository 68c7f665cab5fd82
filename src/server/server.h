// `realm serve`: an OpenAI-compatible HTTP/1.1 server (Boost.Beast) over the sandbox, with the
// Responses API's WebSocket mode on the same port. Every generation runs in its tenant's guest
// through sandbox::Sandbox::submit; the server never reaches into the engine.
//
// A request: the key names the tenant (Directory), the body is validated (openai.h), the prompt
// is counted with the model's tokenizer, admission applies the tenant's rate limits, quota and
// concurrency (Admission), then the guest runs and its events are shaped into OpenAI's responses,
// SSE chunks or WebSocket events by one generation loop whatever the transport. Usage rows (host
// token counts) go to the store in batches (UsageLog); metrics to /metrics.
//
// Connections are served one thread each, HTTP with blocking reads and writes bounded by socket
// deadlines; a request's guest events pass through a bounded buffer, so a slow reader never holds
// a sandbox worker (past the buffer or the write deadline its request is cancelled), and a client
// that disconnects cancels its generation.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sandbox/sandbox.h"
#include "server/admission.h"
#include "server/models.h"
#include "util/expected.h"

namespace realm::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;             // 0: any free port (see Server::port())
  int64_t n_ctx = 4096;             // context of every request's session
  size_t max_body_bytes = 1 << 20;  // larger bodies get 413
  size_t max_header_bytes = 16 << 10;
  int max_connections = 256;                  // more are refused with 503
  std::chrono::seconds read_timeout{30};      // for a request's headers and body
  std::chrono::seconds write_timeout{30};     // for every write to the client
  size_t max_buffered_events = 4096;          // a stream's events waiting for a slow reader
  std::chrono::seconds grace{10};             // shutdown: in-flight streams get this long to finish
  std::chrono::seconds request_timeout{600};  // a generation running longer is cancelled
  QueueLimits queue;
  // The store of tenants, keys and usage (SQLite); "" with no_auth: none.
  std::string db_path;
  std::string secret_path;         // "": db_path + ".secret"
  bool no_auth = false;            // no keys: every request is the tenant "default" (every model)
  std::string chat_template;       // Jinja2 source for every model instead of its own ("": its own)
  size_t max_tenant_labels = 100;  // distinct tenant label values in /metrics
  size_t responses_per_tenant = 1000;  // kept for previous_response_id
  std::chrono::seconds response_ttl{3600};
  // Every model's engine: threads, per-pass token budget, KV budget, sequences, policy.
  engine::EngineOptions engine{1};
  uint64_t model_memory_budget = 0;         // bytes of loaded model files; 0: none
  std::chrono::seconds unload_timeout{30};  // an unload cancels requests still running after it
  // Turns the admin API's {"name", "model"} into a model to load ("model": a GGUF path or a
  // pulled model's name). Unset: "model" is a path.
  std::function<Expected<ServedModel>(const std::string& name, const std::string& model)>
      resolve_model;
};

class Server {
 public:
  // Opens the store, loads the models into a sandbox (`default_guest` for tenants without their
  // own module), and binds the port.
  static Expected<std::unique_ptr<Server>> create(ServerOptions options,
                                                  std::vector<ServedModel> models,
                                                  std::span<const uint8_t> default_guest);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const;
  // Serves until stop() (from a signal handler's thread or another thread).
  void run();
  // Stops accepting, lets in-flight requests finish within the grace period, then cancels them.
  void stop();

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace realm::server
