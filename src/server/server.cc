#include "server/server.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "model/model.h"
#include "server/metrics.h"
#include "server/openai.h"

namespace realm::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Json = nlohmann::json;

namespace {

constexpr const char* kTenant = "default";

std::string random_hex(size_t n) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s += hex[rng() & 15];
  return s;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void set_timeout(tcp::socket& sock, int option, std::chrono::seconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count());
  setsockopt(sock.native_handle(), SOL_SOCKET, option, &tv, sizeof tv);
}

// What an ended request's error becomes for the client.
ApiError api_error_of(const sandbox::RequestResult& r, const std::string& request_id) {
  ApiError e;
  using RE = sandbox::RequestError;
  switch (r.error) {
    case RE::GUEST_ERROR:
      e.status = 400;
      e.message = r.message;
      if (r.message.find("REALM_E_LIMIT") != std::string::npos &&
          r.message.find("context") != std::string::npos) {
        e.code = "context_length_exceeded";
        e.param = "messages";
      }
      return e;
    case RE::TOKEN_LIMIT:
    case RE::OUTPUT_LIMIT:
    case RE::HOST_WORK_LIMIT:
      e.status = 400;
      e.message = r.message;
      return e;
    case RE::INTERNAL:
      e.status = 500;
      e.type = "server_error";
      e.message = "internal error (request " + request_id + ")";
      return e;
    default:  // the tenant's guest failed: a trap, a time or memory limit, ABI misuse
      e.status = 502;
      e.type = "server_error";
      e.message = "the tenant's guest failed: " + r.message;
      return e;
  }
}

// Events from a sandbox worker to the connection's thread, bounded: past `cap` events waiting, or
// once the client is gone, the guest is told to stop.
struct EventChannel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<int, std::string>> events;
  size_t cap = 4096;
  bool done = false;      // the request ended
  bool gone = false;      // the client left or fell behind
  bool overflow = false;  // it fell behind

  bool push(int kind, std::string_view json) {
    std::lock_guard<std::mutex> lock(mu);
    if (gone) return false;
    if (events.size() >= cap) {
      gone = overflow = true;
      cv.notify_all();
      return false;
    }
    events.emplace_back(kind, std::string(json));
    cv.notify_all();
    return true;
  }
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  std::vector<ServedModel> models;
  std::unique_ptr<sandbox::Sandbox> sandbox;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  int64_t created = unix_now();
  Metrics metrics;

  std::atomic<bool> stopping{false};
  std::mutex mu;
  std::condition_variable cv;
  int connections = 0;
  int active_requests = 0;
  std::set<std::shared_ptr<std::atomic<bool>>> cancels;  // of the requests in flight
  std::set<int> fds;                                     // of the open connections

  void serve_connection(tcp::socket sock);
  // Handles one request; false when the connection must close.
  bool handle(tcp::socket& sock, const http::request<http::string_body>& req);
  bool generate(tcp::socket& sock, const http::request<http::string_body>& req, Endpoint ep,
                const std::string& rid);

  bool has_model(const std::string& name) const {
    for (const auto& m : models) {
      if (m.name == name) return true;
    }
    return false;
  }
  Json model_json(const std::string& name) const {
    return {{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "realm"}};
  }

  // Writes a complete JSON response; false on a write failure.
  bool send(tcp::socket& sock, const http::request<http::string_body>& req, http::status status,
            const std::string& body, const std::string& rid, bool keep_alive,
            const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::server, "realm");
    res.set(http::field::content_type, "application/json");
    res.set("x-request-id", rid);
    for (const auto& [k, v] : headers) res.set(k, v);
    res.keep_alive(keep_alive);
    res.body() = body;
    res.prepare_payload();
    beast::error_code ec;
    http::write(sock, res, ec);
    return !ec;
  }
  bool send_error(tcp::socket& sock, const http::request<http::string_body>& req, const ApiError& e,
                  const std::string& rid, bool keep_alive) {
    return send(sock, req, static_cast<http::status>(e.status), error_body(e), rid, keep_alive);
  }
};

void Server::Impl::serve_connection(tcp::socket sock) {
  set_timeout(sock, SO_RCVTIMEO, options.read_timeout);
  set_timeout(sock, SO_SNDTIMEO, options.write_timeout);
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
    parser.body_limit(options.max_body_bytes);
    beast::error_code ec;
    http::read(sock, buffer, parser, ec);
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      http::request<http::string_body> dummy;
      ApiError e;
      e.status = ec == http::error::body_limit ? 413 : 431;
      e.message =
          ec == http::error::body_limit
              ? "the request body exceeds " + std::to_string(options.max_body_bytes) + " bytes"
              : "the request headers exceed " + std::to_string(options.max_header_bytes) + " bytes";
      send_error(sock, dummy, e, random_hex(16), false);
      // The client may still be sending the body: read and drop it for a moment, so that it sees
      // the answer instead of a reset connection.
      beast::error_code ignored;
      sock.shutdown(tcp::socket::shutdown_send, ignored);
      set_timeout(sock, SO_RCVTIMEO, std::chrono::seconds(1));
      std::vector<char> sink(64 << 10);
      for (size_t drained = 0; drained < (64u << 20);) {
        const size_t n = sock.read_some(net::buffer(sink), ignored);
        if (ignored || n == 0) break;
        drained += n;
      }
      break;
    }
    if (ec) {
      if (ec != http::error::end_of_stream && ec != net::error::eof &&
          ec != net::error::connection_reset && ec != net::error::would_block &&
          ec != net::error::try_again && ec != net::error::bad_descriptor &&
          ec != net::error::operation_aborted) {
        http::request<http::string_body> dummy;
        send_error(sock, dummy, {400, "malformed HTTP request: " + ec.message()}, random_hex(16),
                   false);
      }
      break;
    }
    if (!handle(sock, parser.get()) || stopping) break;
  }
  beast::error_code ignored;
  sock.shutdown(tcp::socket::shutdown_both, ignored);
}

bool Server::Impl::handle(tcp::socket& sock, const http::request<http::string_body>& req) {
  const std::string rid = random_hex(16);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string target(req.target());
  const std::string path = target.substr(0, target.find('?'));
  const bool keep = req.keep_alive() && !stopping;
  const auto method = req.method();
  bool ok = true;
  int status = 200;
  auto reply = [&](http::status s, const Json& body) {
    status = static_cast<int>(s);
    ok = send(sock, req, s, body.dump(-1, ' ', false, Json::error_handler_t::replace), rid, keep);
  };
  auto error = [&](const ApiError& e) {
    status = e.status;
    ok = send_error(sock, req, e, rid, keep);
  };
  auto only = [&](http::verb v) {
    if (method == v) return true;
    error({405, "method " + std::string(req.method_string()) + " is not allowed on " + path});
    return false;
  };
  if (path == "/health") {
    if (only(http::verb::get)) reply(http::status::ok, {{"status", "ok"}});
  } else if (path == "/ready") {
    if (only(http::verb::get)) {
      if (stopping) {
        error({503, "shutting down", "server_error"});
      } else {
        reply(http::status::ok, {{"status", "ready"}});
      }
    }
  } else if (path == "/metrics") {
    if (only(http::verb::get)) {
      int running = 0;
      {
        std::lock_guard<std::mutex> lock(mu);
        running = active_requests;
      }
      const double waiting = static_cast<double>(sandbox->queued());
      status = 200;
      ok = send(sock, req, http::status::ok,
                metrics.render({{"realm:num_requests_running", running - waiting},
                                {"realm:num_requests_waiting", waiting}}),
                rid, keep, {{"Content-Type", "text/plain; version=0.0.4"}});
    }
  } else if (path == "/v1/models") {
    if (only(http::verb::get)) {
      Json data = Json::array();
      for (const auto& m : models) data.push_back(model_json(m.name));
      reply(http::status::ok, {{"object", "list"}, {"data", data}});
    }
  } else if (path.rfind("/v1/models/", 0) == 0) {
    if (only(http::verb::get)) {
      const std::string id = path.substr(11);
      if (has_model(id)) {
        reply(http::status::ok, model_json(id));
      } else {
        error({404, "the model '" + id + "' does not exist", "invalid_request_error", "model",
               "model_not_found"});
      }
    }
  } else if (path == "/v1/completions" || path == "/v1/chat/completions" ||
             path == "/v1/responses") {
    if (only(http::verb::post)) {
      const Endpoint ep = path == "/v1/completions"        ? Endpoint::COMPLETIONS
                          : path == "/v1/chat/completions" ? Endpoint::CHAT
                                                           : Endpoint::RESPONSES;
      ok = generate(sock, req, ep, rid);
      status = 0;  // logged by generate
    }
  } else {
    error({404, "no route " + std::string(req.method_string()) + " " + path});
  }
  if (status != 0) {
    std::fprintf(stderr, "realm serve: %s %s %s %d %.3f s\n", rid.c_str(),
                 std::string(req.method_string()).c_str(), path.c_str(), status,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return ok && keep;
}

bool Server::Impl::generate(tcp::socket& sock, const http::request<http::string_body>& req,
                            Endpoint ep, const std::string& rid) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool keep = req.keep_alive() && !stopping;
  Metrics::Request m;
  auto log = [&](int status, const char* note) {
    m.status = status;
    m.e2e_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!m.model.empty()) metrics.record(m);
    std::fprintf(
        stderr, "realm serve: %s POST %s %d %.3f s%s\n", rid.c_str(),
        ep == Endpoint::CHAT        ? "/v1/chat/completions"
        : ep == Endpoint::RESPONSES ? "/v1/responses"
                                    : "/v1/completions",
        status, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), note);
  };
  auto parsed = parse_gen_request(ep, req.body());
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    log(e->status, "");
    return send_error(sock, req, *e, rid, keep);
  }
  GenRequest g = std::move(std::get<GenRequest>(parsed));
  if (!has_model(g.model)) {
    ApiError e{404, "the model '" + g.model + "' does not exist", "invalid_request_error", "model",
               "model_not_found"};
    log(404, "");
    return send_error(sock, req, e, rid, keep);
  }
  g.guest["n_ctx"] = options.n_ctx;
  m.model = g.model;

  auto channel = std::make_shared<EventChannel>();
  channel->cap = options.max_buffered_events;
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  {
    std::lock_guard<std::mutex> lock(mu);
    ++active_requests;
    cancels.insert(cancel);
  }
  // In flight until its last byte is written (shutdown waits for that).
  struct InFlight {
    Impl& s;
    std::shared_ptr<std::atomic<bool>> cancel;
    ~InFlight() {
      std::lock_guard<std::mutex> lock(s.mu);
      --s.active_requests;
      s.cancels.erase(cancel);
      s.cv.notify_all();
    }
  } in_flight{*this, cancel};
  auto future = sandbox->submit(
      kTenant, g.guest.dump(),
      [channel](int kind, std::string_view json) { return channel->push(kind, json); }, cancel);
  auto finish_waiter = std::thread([&future, channel] {
    future.wait();
    std::lock_guard<std::mutex> lock(channel->mu);
    channel->done = true;
    channel->cv.notify_all();
  });

  Shaper shaper{ep, (ep == Endpoint::CHAT ? "chatcmpl-" : "cmpl-") + random_hex(24), g.model,
                unix_now()};
  const bool responses = ep == Endpoint::RESPONSES;
  ResponseShaper rs{"resp_" + random_hex(32), "msg_" + random_hex(32), g.model, unix_now()};
  int64_t sequence = 0;
  std::string text, guest_finish;
  int64_t completion_tokens = 0;
  auto last_token = t0;
  bool started = false, write_failed = false, first_chunk = true;
  http::response<http::empty_body> head{http::status::ok, req.version()};
  http::response_serializer<http::empty_body> serializer{head};
  auto write_sse = [&](const Json& j) {
    if (write_failed) return;
    beast::error_code ec;
    if (!started) {
      head.set(http::field::server, "realm");
      head.set(http::field::content_type, "text/event-stream");
      head.set(http::field::cache_control, "no-cache");
      head.set("x-request-id", rid);
      head.keep_alive(keep);
      head.chunked(true);
      http::write_header(sock, serializer, ec);
      started = true;
    }
    // Responses API events are typed and numbered; the others are plain data lines.
    std::string data;
    if (responses) {
      Json ev = j;
      ev["sequence_number"] = sequence++;
      data = "event: " + ev.value("type", std::string("error")) + "\n";
      data += "data: " + ev.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
    } else {
      data = "data: " + j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
    }
    if (!ec) net::write(sock, http::make_chunk(net::buffer(data)), ec);
    if (ec) write_failed = true;
  };
  // The end of a stream: `data: [DONE]` (not in the Responses API), then the last chunk.
  auto end_stream = [&](bool done_line) {
    beast::error_code ec;
    if (write_failed) return false;
    if (done_line)
      net::write(sock, http::make_chunk(net::buffer(std::string("data: [DONE]\n\n"))), ec);
    if (!ec) net::write(sock, http::make_chunk_last(), ec);
    return !ec;
  };
  const Json part0 = {{"type", "output_text"}, {"text", ""}, {"annotations", Json::array()}};
  if (responses && g.stream) {  // the preamble: the response, its message item, its text part
    const Json in_progress = rs.response("in_progress", "", 0, 0, false);
    write_sse({{"type", "response.created"}, {"response", in_progress}});
    write_sse({{"type", "response.in_progress"}, {"response", in_progress}});
    write_sse({{"type", "response.output_item.added"},
               {"output_index", 0},
               {"item", rs.message_item("in_progress", "")}});
    write_sse(rs.part_event("response.content_part.added", {{"part", part0}}));
  }
  for (;;) {
    std::pair<int, std::string> ev;
    {
      std::unique_lock<std::mutex> lock(channel->mu);
      channel->cv.wait(lock, [&] { return !channel->events.empty() || channel->done; });
      if (channel->events.empty()) break;  // done and drained
      ev = std::move(channel->events.front());
      channel->events.pop_front();
    }
    const Json j = Json::parse(ev.second, nullptr, false);  // checked by the host
    if (ev.first == 2) {
      guest_finish = j.value("finish_reason", std::string("stop"));
      continue;
    }
    if (j.value("id", -1) >= 0) {
      ++completion_tokens;
      const auto now = std::chrono::steady_clock::now();
      if (m.ttft_s < 0) {
        m.ttft_s = std::chrono::duration<double>(now - t0).count();
      } else {
        m.itl_s.push_back(std::chrono::duration<double>(now - last_token).count());
      }
      last_token = now;
    }
    const std::string piece = j.value("text", std::string());
    text += piece;
    if (g.stream && !piece.empty()) {
      if (responses) {
        write_sse(rs.part_event("response.output_text.delta",
                                {{"delta", piece}, {"logprobs", Json::array()}}));
      } else {
        write_sse(shaper.chunk(piece, first_chunk));
      }
      first_chunk = false;
      if (write_failed) {
        {
          std::lock_guard<std::mutex> lock(channel->mu);
          channel->gone = true;
        }
        sandbox->cancel(cancel);
      }
    }
  }
  finish_waiter.join();
  const sandbox::RequestResult r = future.get();
  const int64_t prompt_tokens = r.tokens_decoded - std::max<int64_t>(completion_tokens - 1, 0);
  m.prompt_tokens = prompt_tokens;
  m.generation_tokens = completion_tokens;
  if (write_failed || (channel->gone && !channel->overflow)) {
    log(499, " (client gone)");
    return false;
  }
  if (channel->overflow) {
    log(499, " (the client read too slowly)");
    return false;
  }
  if (!r.ok()) {
    const ApiError e = api_error_of(r, rid);
    if (e.status >= 500)
      std::fprintf(stderr, "realm serve: %s: %s\n", rid.c_str(), r.message.c_str());
    log(e.status, "");
    if (!started) return send_error(sock, req, e, rid, keep);
    if (responses) {
      write_sse({{"type", "error"},
                 {"code", e.code.empty() ? Json() : Json(e.code)},
                 {"message", e.message},
                 {"param", e.param.empty() ? Json() : Json(e.param)}});
    } else {
      write_sse(error_json(e));
    }
    end_stream(!responses);
    return false;
  }
  const std::string finish = finish_reason(guest_finish);
  if (responses) {
    const std::string status = finish == "length" ? "incomplete" : "completed";
    const Json final_response = rs.response(status, text, prompt_tokens, completion_tokens, true);
    if (!g.stream) {
      log(200, "");
      return send(sock, req, http::status::ok,
                  final_response.dump(-1, ' ', false, Json::error_handler_t::replace), rid, keep);
    }
    Json part = part0;
    part["text"] = text;
    write_sse(
        rs.part_event("response.output_text.done", {{"text", text}, {"logprobs", Json::array()}}));
    write_sse(rs.part_event("response.content_part.done", {{"part", part}}));
    write_sse({{"type", "response.output_item.done"},
               {"output_index", 0},
               {"item", rs.message_item("completed", text)}});
    write_sse({{"type", status == "completed" ? "response.completed" : "response.incomplete"},
               {"response", final_response}});
    const bool ended = end_stream(false);
    log(200, "");
    return ended;
  }
  if (!g.stream) {
    log(200, "");
    return send(sock, req, http::status::ok,
                shaper.response(text, finish, prompt_tokens, completion_tokens)
                    .dump(-1, ' ', false, Json::error_handler_t::replace),
                rid, keep);
  }
  if (first_chunk) {  // nothing was streamed: the role still comes first
    write_sse(shaper.chunk("", true));
  }
  write_sse(shaper.final_chunk(finish));
  if (g.include_usage) write_sse(shaper.usage_chunk(prompt_tokens, completion_tokens));
  const bool ended = end_stream(true);
  log(200, "");
  return ended;
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  stop();
}

Expected<std::unique_ptr<Server>> Server::create(ServerOptions options,
                                                 std::vector<ServedModel> models,
                                                 std::span<const uint8_t> guest_wasm,
                                                 int n_threads) {
  if (models.empty()) return make_error("realm serve needs at least one --model NAME=PATH");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  sandbox::SandboxOptions so;
  so.n_workers = std::max(8, options.max_connections);
  auto sb = sandbox::Sandbox::create(so);
  if (!sb) return sb.take_error();
  impl->sandbox = std::move(*sb);
  sandbox::TenantRecord tenant;
  tenant.id = kTenant;
  for (const auto& m : models) {
    if (m.name.empty()) return make_error("a model needs a name (--model NAME=PATH)");
    for (const auto& other : impl->models) {
      if (other.name == m.name) return make_error("the model name '", m.name, "' is used twice");
    }
    auto loaded = model::Model::load(m.path);
    if (!loaded) return loaded.take_error();
    REALM_TRY(impl->sandbox->add_model(m.name, *loaded, {n_threads, 512}));
    tenant.allowed_models.push_back(m.name);
    impl->models.push_back(m);
  }
  tenant.limits.max_session_ctx = options.n_ctx;
  tenant.limits.token_budget = options.n_ctx + 1;
  tenant.limits.max_sessions = options.max_connections;
  auto module = impl->sandbox->compile_module(guest_wasm);
  if (!module) return module.take_error();
  REALM_TRY(impl->sandbox->add_tenant(tenant, *module));
  beast::error_code ec;
  auto address = net::ip::make_address(options.host, ec);
  if (ec) return make_error("--host ", options.host, ": ", ec.message());
  tcp::endpoint ep{address, options.port};
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return make_error(ErrorCode::UNAVAILABLE, "cannot listen on ", options.host, ":", options.port,
                      ": ", ec.message());
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

uint16_t Server::port() const {
  beast::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void Server::run() {
  Impl& s = *impl_;
  while (!s.stopping) {
    beast::error_code ec;
    tcp::socket sock = s.acceptor.accept(ec);
    if (ec) {
      if (s.stopping) break;
      continue;
    }
    std::unique_lock<std::mutex> lock(s.mu);
    if (s.connections >= s.options.max_connections) {
      lock.unlock();
      http::request<http::string_body> dummy;
      set_timeout(sock, SO_SNDTIMEO, std::chrono::seconds(1));
      s.send(sock, dummy, http::status::service_unavailable,
             error_body({503, "too many connections", "server_error"}), random_hex(16), false,
             {{"Retry-After", "1"}});
      continue;
    }
    ++s.connections;
    const int fd = sock.native_handle();
    s.fds.insert(fd);
    lock.unlock();
    std::thread([&s, fd, sock = std::move(sock)]() mutable {
      s.serve_connection(std::move(sock));
      std::lock_guard<std::mutex> l(s.mu);
      s.fds.erase(fd);
      --s.connections;
      s.cv.notify_all();
    }).detach();
  }
  // Shutdown: in-flight requests get the grace period, then are cancelled; idle connections are
  // closed; run() returns when every connection has ended.
  std::unique_lock<std::mutex> lock(s.mu);
  s.cv.wait_for(lock, s.options.grace, [&] { return s.active_requests == 0; });
  for (const auto& c : s.cancels) s.sandbox->cancel(c);
  for (int fd : s.fds) ::shutdown(fd, SHUT_RDWR);
  s.cv.wait(lock, [&] { return s.connections == 0; });
}

void Server::stop() {
  Impl& s = *impl_;
  if (s.stopping.exchange(true)) return;
  beast::error_code ec;
  s.acceptor.cancel(ec);
  ::shutdown(s.acceptor.native_handle(), SHUT_RDWR);
}

}  // namespace realm::server
