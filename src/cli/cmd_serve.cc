// `realm serve [--config FILE] [--model NAME=PATH ...] [--host 127.0.0.1] [--port 8080] [--db FILE]
// [-t N] [-c CTX] [--chat-template FILE] [--grace-s S] [--no-auth] ...`: the OpenAI-compatible
// HTTP and WebSocket server (docs/server.md). The config file (JSON) holds the same settings;
// flags override it. SIGTERM or SIGINT stops it gracefully: no new connections, in-flight
// requests get the grace period, then are cancelled, usage rows are flushed; exit status 0.
#include <pthread.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "cli/commands.h"

#if REALM_HAVE_SERVER
#include "hub/store.h"
#include "server/server.h"

#if REALM_HAVE_DEFAULT_GUEST
extern const unsigned char realm_default_guest_wasm[];
extern const unsigned long realm_default_guest_wasm_size;
#endif
#endif

namespace realm::cli {

namespace {

bool read_text(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string config;
    std::vector<std::string> models;
    std::string host, db, secret_file, chat_template, pack_cache;
    int port = -1, threads = -1, grace_s = -1, max_connections = -1;
    int64_t ctx = -1;
    bool no_auth = false;
    int64_t queue = -1, tenant_queue = -1, queue_timeout_s = -1, request_timeout_s = -1;
    int64_t read_timeout_s = -1, write_timeout_s = -1;
    int64_t models_memory_mb = -1, unload_timeout_s = -1;
    int64_t kv_budget_mb = -1, batch_tokens = -1;
    int max_seqs = -1;
    std::string schedule;
    std::vector<std::string> shared_prefix;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("serve", "Serve models over an OpenAI-compatible HTTP API");
  cmd->add_option("--config", a->config, "JSON config file (docs/server.md); flags override it");
  cmd->add_option("--model", a->models,
                  "NAME=PATH or NAME=PULLED_MODEL (realm pull) to serve (repeatable)");
  cmd->add_option("--models-memory-mb", a->models_memory_mb,
                  "Budget of loaded model files: a load past it unloads idle models, least "
                  "recently used first (default 0: none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  cmd->add_option("--unload-timeout-s", a->unload_timeout_s,
                  "Seconds an unload waits for the model's running requests before cancelling "
                  "them (default 30)")
      ->check(CLI::Range(int64_t{0}, int64_t{3600}));
  cmd->add_option("--pack-cache", a->pack_cache,
                  "Directory for the packed-weight cache of models given by path (pulled models "
                  "keep theirs in the store; default: none)");
  cmd->add_option("--kv-budget-mb", a->kv_budget_mb,
                  "KV cache memory of each model: its block pool (default 1024)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--max-seqs", a->max_seqs,
                  "Sequences each model's scheduler runs at once (default 256)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--batch-tokens", a->batch_tokens,
                  "Tokens of one forward pass: decode steps and prompt chunks (default 512)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--schedule", a->schedule,
                  "Order of admission and passes: vtc (fair, by tenant weight; default) or fifo");
  cmd->add_option("--shared-prefix", a->shared_prefix,
                  "A model whose prefix cache every tenant shares (repeatable; default: each "
                  "tenant's prompts are cached for that tenant only)");
  cmd->add_option("--host", a->host, "Address to listen on (default 127.0.0.1)");
  cmd->add_option("--port", a->port, "Port (default 8080; 0: any free port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--db", a->db, "Tenants, keys and usage (SQLite; default $REALM_HOME/realm.db)");
  cmd->add_option("--secret-file", a->secret_file, "Key-hashing secret (default DB.secret)");
  cmd->add_flag("--no-auth", a->no_auth,
                "No keys: every request is the tenant 'default' with every model (local use)");
  cmd->add_option("-t,--threads", a->threads, "Threads per model (default, or 0: all cores)")
      ->check(CLI::Range(0, kMaxThreads));
  cmd->add_option("-c,--ctx-size", a->ctx, "Context of each request (default 4096)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--chat-template", a->chat_template,
                  "Jinja2 chat template file used instead of the models' own");
  cmd->add_option("--grace-s", a->grace_s,
                  "Seconds in-flight requests may finish at shutdown (default 10)")
      ->check(CLI::Range(0, 3600));
  cmd->add_option("--max-connections", a->max_connections, "Open connections (default 256)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--queue", a->queue, "Requests waiting for a slot, all tenants (default 256)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--tenant-queue", a->tenant_queue,
                  "Requests of one tenant waiting for a slot (default 64)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--queue-timeout-s", a->queue_timeout_s,
                  "Seconds a request may wait for a slot (default 60)")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}));
  cmd->add_option("--read-timeout-s", a->read_timeout_s,
                  "Seconds a request's headers and body may take to arrive (default 30)")
      ->check(CLI::Range(int64_t{1}, int64_t{3600}));
  cmd->add_option("--write-timeout-s", a->write_timeout_s,
                  "Seconds one write to a client may wait for it to read (default 30)")
      ->check(CLI::Range(int64_t{1}, int64_t{3600}));
  cmd->add_option("--request-timeout-s", a->request_timeout_s,
                  "Seconds a generation may run (default 600)")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}));
  cmd->callback([a, &exit_code] {
#if REALM_HAVE_SERVER && REALM_HAVE_DEFAULT_GUEST
    auto fail = [&](const std::string& message, int code = 1) {
      std::cerr << "realm: error: " << message << "\n";
      exit_code = code;
    };
    server::ServerOptions o;
    std::vector<std::pair<std::string, std::string>> models;  // name, path or pulled model
    std::string pack_cache;
    int64_t models_memory_mb = 0, kv_budget_mb = 1024;
    int threads = 0;
    std::string schedule = "vtc";
    std::set<std::string> shared_prefix;
    std::string chat_template_path;
    // The config file first; flags override it.
    if (!a->config.empty()) {
      std::string text;
      if (!read_text(a->config, text)) return fail("cannot read the config file " + a->config);
      const auto j = nlohmann::json::parse(text, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        return fail("the config file " + a->config + " is not a JSON object");
      }
      try {
        static const std::set<std::string> known = {"models",
                                                    "host",
                                                    "port",
                                                    "db",
                                                    "secret_file",
                                                    "no_auth",
                                                    "threads",
                                                    "ctx",
                                                    "chat_template",
                                                    "grace_s",
                                                    "max_connections",
                                                    "max_body_bytes",
                                                    "queue",
                                                    "tenant_queue",
                                                    "queue_timeout_s",
                                                    "request_timeout_s",
                                                    "read_timeout_s",
                                                    "write_timeout_s",
                                                    "max_tenant_labels",
                                                    "responses_per_tenant",
                                                    "response_ttl_s",
                                                    "models_memory_mb",
                                                    "unload_timeout_s",
                                                    "pack_cache",
                                                    "kv_budget_mb",
                                                    "max_seqs",
                                                    "batch_tokens",
                                                    "schedule",
                                                    "shared_prefix"};
        for (const auto& [k, v] : j.items()) {
          if (!known.count(k)) return fail("the config file has an unknown setting '" + k + "'");
        }
        if (j.contains("models")) {
          for (const auto& [name, path] : j.at("models").items()) {
            models.emplace_back(name, path.get<std::string>());
          }
        }
        o.host = j.value("host", o.host);
        o.port = j.value("port", o.port);
        o.db_path = j.value("db", o.db_path);
        o.secret_path = j.value("secret_file", o.secret_path);
        o.no_auth = j.value("no_auth", o.no_auth);
        threads = j.value("threads", threads);
        o.n_ctx = j.value("ctx", o.n_ctx);
        chat_template_path = j.value("chat_template", chat_template_path);
        o.grace = std::chrono::seconds(j.value("grace_s", int64_t{o.grace.count()}));
        o.max_connections = j.value("max_connections", o.max_connections);
        o.max_body_bytes = j.value("max_body_bytes", o.max_body_bytes);
        o.queue.max_waiting_total = j.value("queue", o.queue.max_waiting_total);
        o.queue.max_waiting_per_tenant = j.value("tenant_queue", o.queue.max_waiting_per_tenant);
        o.queue.max_wait = std::chrono::seconds(j.value("queue_timeout_s", int64_t{60}));
        o.request_timeout =
            std::chrono::seconds(j.value("request_timeout_s", int64_t{o.request_timeout.count()}));
        o.read_timeout =
            std::chrono::seconds(j.value("read_timeout_s", int64_t{o.read_timeout.count()}));
        o.write_timeout =
            std::chrono::seconds(j.value("write_timeout_s", int64_t{o.write_timeout.count()}));
        o.max_tenant_labels = j.value("max_tenant_labels", o.max_tenant_labels);
        o.responses_per_tenant = j.value("responses_per_tenant", o.responses_per_tenant);
        o.response_ttl = std::chrono::seconds(j.value("response_ttl_s", int64_t{3600}));
        models_memory_mb = j.value("models_memory_mb", models_memory_mb);
        o.unload_timeout =
            std::chrono::seconds(j.value("unload_timeout_s", int64_t{o.unload_timeout.count()}));
        pack_cache = j.value("pack_cache", pack_cache);
        kv_budget_mb = j.value("kv_budget_mb", kv_budget_mb);
        o.engine.max_seqs = j.value("max_seqs", o.engine.max_seqs);
        o.engine.max_batch_tokens = j.value("batch_tokens", o.engine.max_batch_tokens);
        schedule = j.value("schedule", schedule);
        if (j.contains("shared_prefix")) {
          for (const auto& n : j.at("shared_prefix")) shared_prefix.insert(n.get<std::string>());
        }
      } catch (const std::exception& e) {
        return fail("the config file " + a->config + ": " + e.what());
      }
      if (o.n_ctx < 1 || o.max_connections < 1 || threads < 0 || models_memory_mb < 0 ||
          o.unload_timeout.count() < 0 || kv_budget_mb < 1 || o.engine.max_seqs < 1 ||
          o.engine.max_batch_tokens < 1) {
        return fail("the config file " + a->config + " has a value out of range");
      }
    }
    for (const std::string& m : a->models) {
      const size_t eq = m.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == m.size()) {
        return fail("--model wants NAME=PATH (or NAME=PULLED_MODEL), got '" + m + "'", 2);
      }
      models.emplace_back(m.substr(0, eq), m.substr(eq + 1));
    }
    if (a->no_auth && models.empty()) {
      return fail("no model to serve: give --model NAME=PATH (--no-auth has no admin API)", 2);
    }
    if (a->models_memory_mb >= 0) models_memory_mb = a->models_memory_mb;
    if (a->unload_timeout_s >= 0) o.unload_timeout = std::chrono::seconds(a->unload_timeout_s);
    if (!a->pack_cache.empty()) pack_cache = a->pack_cache;
    o.model_memory_budget = static_cast<uint64_t>(models_memory_mb) << 20;
    if (a->kv_budget_mb > 0) kv_budget_mb = a->kv_budget_mb;
    o.engine.kv_budget_bytes = static_cast<uint64_t>(kv_budget_mb) << 20;
    if (a->max_seqs > 0) o.engine.max_seqs = a->max_seqs;
    if (a->batch_tokens > 0) o.engine.max_batch_tokens = a->batch_tokens;
    if (!a->schedule.empty()) schedule = a->schedule;
    if (schedule != "vtc" && schedule != "fifo") {
      return fail("--schedule must be vtc or fifo, got '" + schedule + "'", 2);
    }
    o.engine.policy =
        schedule == "fifo" ? engine::SchedulePolicy::FIFO : engine::SchedulePolicy::VTC;
    shared_prefix.insert(a->shared_prefix.begin(), a->shared_prefix.end());
    // A model is a GGUF path or a pulled model's name (hub/store.h); a pulled model's packed
    // weights are cached beside it in the store, a path's in --pack-cache when given.
    o.resolve_model = [pack_cache, shared_prefix](
                          const std::string& name,
                          const std::string& source) -> Expected<server::ServedModel> {
      auto r = hub::resolve_model(source);
      if (!r) return r.take_error();
      server::ServedModel m;
      m.name = name;
      m.path = r->path;
      m.source = source;
      m.pack_cache_dir = r->in_store ? r->entry_dir : pack_cache;
      m.sha256 = r->sha256.value_or("");
      m.shared_prefix = shared_prefix.count(name) > 0;
      return m;
    };
    std::vector<server::ServedModel> served;
    for (const auto& [name, source] : models) {
      auto m = o.resolve_model(name, source);
      if (!m) return fail("--model " + name + "=" + source + ": " + m.error().message);
      served.push_back(std::move(*m));
    }
    if (!a->host.empty()) o.host = a->host;
    if (a->port >= 0) o.port = a->port;
    if (!a->db.empty()) o.db_path = a->db;
    if (!a->secret_file.empty()) o.secret_path = a->secret_file;
    if (a->no_auth) o.no_auth = true;
    if (a->threads >= 0) threads = a->threads;
    if (a->ctx > 0) o.n_ctx = a->ctx;
    if (!a->chat_template.empty()) chat_template_path = a->chat_template;
    if (a->grace_s >= 0) o.grace = std::chrono::seconds(a->grace_s);
    if (a->max_connections > 0) o.max_connections = a->max_connections;
    if (a->queue >= 0) o.queue.max_waiting_total = static_cast<size_t>(a->queue);
    if (a->tenant_queue >= 0) o.queue.max_waiting_per_tenant = static_cast<size_t>(a->tenant_queue);
    if (a->queue_timeout_s > 0) o.queue.max_wait = std::chrono::seconds(a->queue_timeout_s);
    if (a->request_timeout_s > 0) o.request_timeout = std::chrono::seconds(a->request_timeout_s);
    if (a->read_timeout_s > 0) o.read_timeout = std::chrono::seconds(a->read_timeout_s);
    if (a->write_timeout_s > 0) o.write_timeout = std::chrono::seconds(a->write_timeout_s);
    if (!chat_template_path.empty() && !read_text(chat_template_path, o.chat_template)) {
      return fail("cannot read the chat template " + chat_template_path);
    }
    o.engine.n_threads = resolve_threads(threads);
    // Signals go to one thread, which stops the server; every other thread blocks them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    auto s = server::Server::create(
        o, served,
        std::span<const uint8_t>(realm_default_guest_wasm, realm_default_guest_wasm_size));
    if (!s) return fail(s.error().message);
    server::Server& srv = **s;
    std::thread waiter([&srv, signals] {
      int sig = 0;
      sigwait(&signals, &sig);
      if (sig != 0) srv.stop();
    });
    std::cerr << "realm serve: listening on http://" << o.host << ":" << srv.port()
              << (o.no_auth ? " (--no-auth: no keys needed)" : "") << "\n";
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
