// `realm serve`: an OpenAI-compatible HTTP/1.1 server (Boost.Beast) over the sandbox. Every
// generation runs in a tenant's guest through sandbox::Sandbox::submit; the server never reaches
// into the engine. Connections are served one thread each with blocking reads and writes bounded
// by socket deadlines (a slow or silent client cannot hold a connection forever); a request's
// guest events pass through a bounded buffer to the connection's thread, so a slow reader never
// holds a sandbox worker (past the buffer or the write deadline its request is cancelled), and a
// client that disconnects cancels its generation.
//
// This first version serves one built-in tenant ("default", every model) without keys; tenants,
// keys, quotas, usage and metrics are the next steps (docs/server.md).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sandbox/sandbox.h"
#include "util/expected.h"

namespace realm::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;             // 0: any free port (see Server::port())
  int64_t n_ctx = 4096;             // context of every request's session
  size_t max_body_bytes = 1 << 20;  // larger bodies get 413
  size_t max_header_bytes = 16 << 10;
  int max_connections = 256;               // more are refused with 503
  std::chrono::seconds read_timeout{30};   // for a request's headers and body
  std::chrono::seconds write_timeout{30};  // for every write to the client
  size_t max_buffered_events = 4096;       // a stream's events waiting for a slow reader
  std::chrono::seconds grace{10};          // shutdown: in-flight streams get this long to finish
};

struct ServedModel {
  std::string name;
  std::string path;
};

class Server {
 public:
  // Loads the models into a sandbox running `guest` for the default tenant, and binds the port.
  static Expected<std::unique_ptr<Server>> create(ServerOptions options,
                                                  std::vector<ServedModel> models,
                                                  std::span<const uint8_t> guest_wasm,
                                                  int n_threads);
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
