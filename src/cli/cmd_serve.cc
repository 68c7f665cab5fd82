// `realm serve --model NAME=PATH [--model ...] [--host 127.0.0.1] [--port 8080] [-t N] [-c CTX]
// [--grace-s S]`: the OpenAI-compatible HTTP server (docs/server.md). SIGTERM or SIGINT stops it
// gracefully: no new connections, in-flight requests get the grace period, then are cancelled;
// exit status 0.
#include <pthread.h>
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>
#include <thread>

#include "cli/commands.h"

#if REALM_HAVE_SERVER
#include "server/server.h"

#if REALM_HAVE_DEFAULT_GUEST
extern const unsigned char realm_default_guest_wasm[];
extern const unsigned long realm_default_guest_wasm_size;
#endif
#endif

namespace realm::cli {

void add_serve_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::vector<std::string> models;
    std::string host = "127.0.0.1";
    int port = 8080;
    int threads = 0;
    int64_t ctx = 4096;
    int grace_s = 10;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("serve", "Serve models over an OpenAI-compatible HTTP API");
  cmd->add_option("--model", a->models, "NAME=PATH of a GGUF model to serve (repeatable)")
      ->required();
  cmd->add_option("--host", a->host, "Address to listen on (default 127.0.0.1)");
  cmd->add_option("--port", a->port, "Port (default 8080; 0: any free port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("-t,--threads", a->threads, "Threads per model (default, or 0: all cores)")
      ->check(CLI::Range(0, kMaxThreads));
  cmd->add_option("-c,--ctx-size", a->ctx, "Context of each request (default 4096)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--grace-s", a->grace_s,
                  "Seconds in-flight requests may finish at shutdown (default 10)")
      ->check(CLI::Range(0, 3600));
  cmd->callback([a, &exit_code] {
#if REALM_HAVE_SERVER && REALM_HAVE_DEFAULT_GUEST
    std::vector<server::ServedModel> models;
    for (const std::string& m : a->models) {
      const size_t eq = m.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == m.size()) {
        std::cerr << "realm: error: --model wants NAME=PATH, got '" << m << "'\n";
        exit_code = 2;
        return;
      }
      models.push_back({m.substr(0, eq), m.substr(eq + 1)});
    }
    server::ServerOptions o;
    o.host = a->host;
    o.port = static_cast<uint16_t>(a->port);
    o.n_ctx = a->ctx;
    o.grace = std::chrono::seconds(a->grace_s);
    // Signals go to one thread, which stops the server; every other thread blocks them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    auto s = server::Server::create(
        o, models,
        std::span<const uint8_t>(realm_default_guest_wasm, realm_default_guest_wasm_size),
        resolve_threads(a->threads));
    if (!s) {
      std::cerr << "realm: error: " << s.error().message << "\n";
      exit_code = 1;
      return;
    }
    server::Server& srv = **s;
    std::thread waiter([&srv, signals] {
      int sig = 0;
      sigwait(&signals, &sig);
      if (sig != 0) srv.stop();
    });
    std::cerr << "realm serve: listening on http://" << a->host << ":" << srv.port() << "\n";
    srv.run();
    // Wake the signal thread if run() ended by itself.
    pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    std::cerr << "realm serve: stopped\n";
    exit_code = 0;
#else
    std::cerr << "realm: error: this build has no server (Boost.Beast, V8 or the wasm toolchain "
                 "was missing when it was built)\n";
    exit_code = 1;
#endif
  });
}

}  // namespace realm::cli
