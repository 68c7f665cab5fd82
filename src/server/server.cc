#include "server/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <cerrno>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cmath>
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
#include "server/admin.h"
#include "server/conversations.h"
#include "server/directory.h"
#include "server/metrics.h"
#include "server/openai.h"
#include "server/store.h"
#include "server/usage.h"

namespace realm::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Json = nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;
using Clock = std::chrono::steady_clock;

namespace {

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

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// A connected socket whose every blocking read and write has a deadline. (asio's own blocking
// calls wait in poll() without a timeout, whatever SO_RCVTIMEO / SO_SNDTIMEO say; this wraps the
// socket in non-blocking mode and waits itself.) Satisfies Beast's SyncReadStream and
// SyncWriteStream, so http::read / http::write / net::write use it directly. Past a deadline an
// operation fails with net::error::timed_out.
class TimedSocket {
 public:
  using executor_type = tcp::socket::executor_type;
  TimedSocket(tcp::socket sock, std::chrono::milliseconds write_timeout)
      : sock_(std::move(sock)), write_timeout_(write_timeout) {
    beast::error_code ec;
    sock_.non_blocking(true, ec);
  }
  executor_type get_executor() { return sock_.get_executor(); }
  tcp::socket& raw() { return sock_; }
  int fd() { return sock_.native_handle(); }
  // Reads until this time point fail.
  void read_deadline(Clock::time_point t) { read_deadline_ = t; }

  template <class Buffers>
  size_t read_some(const Buffers& b, beast::error_code& ec) {
    for (;;) {
      const size_t n = sock_.read_some(b, ec);
      if (ec != net::error::would_block && ec != net::error::try_again) return n;
      if (!wait(POLLIN, read_deadline_, ec)) return 0;
    }
  }
  template <class Buffers>
  size_t write_some(const Buffers& b, beast::error_code& ec) {
    const auto deadline = Clock::now() + write_timeout_;
    for (;;) {
      const size_t n = sock_.write_some(b, ec);
      if (ec != net::error::would_block && ec != net::error::try_again) return n;
      if (!wait(POLLOUT, deadline, ec)) return 0;
    }
  }
  template <class Buffers>
  size_t read_some(const Buffers& b) {
    beast::error_code ec;
    const size_t n = read_some(b, ec);
    if (ec) throw beast::system_error(ec);
    return n;
  }
  template <class Buffers>
  size_t write_some(const Buffers& b) {
    beast::error_code ec;
    const size_t n = write_some(b, ec);
    if (ec) throw beast::system_error(ec);
    return n;
  }

 private:
  bool wait(short events, Clock::time_point deadline, beast::error_code& ec) {
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        ec = net::error::timed_out;
        return false;
      }
      pollfd p{sock_.native_handle(), events, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count() + 1, 1 << 30)));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) {
        ec = beast::error_code(errno, boost::system::system_category());
        return false;
      }
    }
  }
  tcp::socket sock_;
  std::chrono::milliseconds write_timeout_;
  Clock::time_point read_deadline_ = Clock::time_point::max();
};

// True when the peer has closed its side (or the socket failed): polled while a request waits.
bool peer_closed(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
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
      e.code = "guest_failed";
      e.message = "the tenant's guest failed: " + r.message;
      return e;
  }
}

// Events from a sandbox worker to the request's thread, bounded: past `cap` events waiting, or
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

// Where a streamed generation's events go: an SSE response or a WebSocket lane. One generation
// loop (Impl::generate) drives both.
struct StreamOut {
  virtual ~StreamOut() = default;
  // Writes one event (`headers` go with the first); false when the client is gone.
  virtual bool event(const Json& j, const Headers& headers) = 0;
  // An error, before or after the first event.
  virtual void error(const ApiError& e, const Headers& headers) = 0;
  // The end of a successful stream.
  virtual bool end() = 0;
  // The client left (polled while the request waits for a slot).
  virtual bool gone() = 0;
  bool started = false;
};

// How a generation request ended, for the transport.
struct Outcome {
  int status = 200;
  bool failed = false;  // `error` is to be sent (a streamed request sent it itself)
  ApiError error;
  Headers headers;
  Json body;         // an unstreamed success
  bool keep = true;  // the connection may serve another request
};

Headers retry_headers(double seconds) {
  const double s = std::clamp(seconds, 0.001, 120.0);
  return {{"retry-after", std::to_string(static_cast<int64_t>(std::ceil(s)))},
          {"retry-after-ms", std::to_string(static_cast<int64_t>(std::ceil(s * 1000)))}};
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  std::unique_ptr<Store> store;
  std::unique_ptr<sandbox::Sandbox> sandbox;
  std::unique_ptr<ModelRegistry> models;
  std::unique_ptr<Directory> directory;
  std::unique_ptr<Admission> admission;
  std::unique_ptr<UsageLog> usage;
  std::unique_ptr<Conversations> conversations;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  int64_t created = unix_now();
  std::unique_ptr<Metrics> metrics;

  std::atomic<bool> stopping{false};
  std::mutex mu;
  std::condition_variable cv;
  int connections = 0;
  int active_requests = 0;
  std::set<std::shared_ptr<std::atomic<bool>>> cancels;  // of the requests in flight
  std::set<int> fds;                                     // of the open connections

  void serve_connection(tcp::socket raw);
  // Handles one request; false when the connection must close.
  bool handle(TimedSocket& sock, const http::request<http::string_body>& req);
  bool handle_generation(TimedSocket& sock, const http::request<http::string_body>& req,
                         Endpoint ep, const std::string& rid);
  void serve_websocket(tcp::socket sock, http::request<http::string_body> req);
  // Runs one generation request for `who`; streamed through `out` when it asks for a stream (`out`
  // is also asked whether the client is still there while the request waits).
  // `local`: a WebSocket connection's own responses (kept when `store` is false).
  Outcome generate(const Identity& who, GenRequest g, const std::string& rid,
                   const std::string& response_id, StreamOut* out,
                   std::shared_ptr<std::atomic<bool>> cancel, std::map<std::string, Json>* local);

  // The caller of a request: Authorization: Bearer KEY (or x-api-key / api-key).
  std::variant<Identity, ApiError> authenticate(std::string_view key) const {
    if (directory->open()) return directory->anonymous();
    if (key.empty()) {
      return ApiError{401, "missing API key: send Authorization: Bearer rk-...",
                      "invalid_request_error", "", "invalid_api_key"};
    }
    auto id = directory->authenticate(key);
    if (!id)
      return ApiError{401, "invalid API key", "invalid_request_error", "", "invalid_api_key"};
    return *id;
  }
  static std::string presented_key(const http::request<http::string_body>& req) {
    auto auth = req.find(http::field::authorization);
    if (auth != req.end()) {
      std::string v(auth->value());
      if (v.size() > 7 && (v.rfind("Bearer ", 0) == 0 || v.rfind("bearer ", 0) == 0)) {
        v = v.substr(7);
        while (!v.empty() && v.front() == ' ') v.erase(v.begin());
        return v;
      }
      return "";
    }
    for (const char* h : {"x-api-key", "api-key"}) {
      auto it = req.find(h);
      if (it != req.end()) return std::string(it->value());
    }
    return "";
  }

  bool has_model(const std::string& name) const { return models->has(name); }
  static bool may_use(const TenantConfig* t, const std::string& model) {
    if (!t || t->models.empty()) return true;
    for (const auto& m : t->models) {
      if (m == model || m == "*") return true;
    }
    return false;
  }
  Json model_json(const std::string& name) const {
    return {{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "realm"}};
  }
  std::vector<Metrics::Gauge> gauges() const;
  // /admin/models: list, load, show, unload models while serving.
  AdminReply admin_models(const std::string& method, const std::string& path,
                          const std::string& query, const std::string& body);

  // Writes a complete response; false on a write failure.
  template <class Stream>
  bool send(Stream& sock, unsigned version, http::status status, const std::string& body,
            const std::string& rid, bool keep_alive, const Headers& headers = {},
            const char* content_type = "application/json") {
    http::response<http::string_body> res{status, version};
    res.set(http::field::server, "realm");
    res.set(http::field::content_type, content_type);
    res.set("x-request-id", rid);
    for (const auto& [k, v] : headers) res.set(k, v);
    res.keep_alive(keep_alive);
    res.body() = body;
    res.prepare_payload();
    beast::error_code ec;
    http::write(sock, res, ec);
    return !ec;
  }
  template <class Stream>
  bool send_error(Stream& sock, unsigned version, const ApiError& e, const std::string& rid,
                  bool keep_alive, const Headers& headers = {}) {
    return send(sock, version, static_cast<http::status>(e.status), error_body(e), rid, keep_alive,
                headers);
  }
};

// ---- the generation loop ----------------------------------------------------------------------

Outcome Server::Impl::generate(const Identity& who, GenRequest g, const std::string& rid,
                               const std::string& response_id, StreamOut* out,
                               std::shared_ptr<std::atomic<bool>> cancel,
                               std::map<std::string, Json>* local) {
  const auto t0 = Clock::now();
  const Endpoint ep = g.endpoint;
  const bool responses = ep == Endpoint::RESPONSES;
  const std::string tenant = who.tenant ? who.tenant->id : who.key.tenant;
  Metrics::Request m;
  m.model = g.model;
  m.tenant = tenant;
  UsageRow row;
  row.request_id = rid;
  row.tenant = tenant;
  row.key_id = who.key.id;
  row.model = g.model.substr(0, 256);  // a client's unknown model name, bounded
  row.endpoint = ep == Endpoint::CHAT        ? "chat.completions"
                 : ep == Endpoint::RESPONSES ? "responses"
                                             : "completions";
  Outcome o;
  // The model stays loaded while this request holds its lease, until its guest run ends (an
  // unload waits for that, then cancels it through `cancel`).
  std::unique_ptr<ModelRegistry::Lease> lease;
  bool served_model = false;  // the model is one this server serves (a bounded metrics label)
  // Every ending goes through here: metrics, one usage row, the log line.
  auto finish = [&](int status, const std::string& finish_reason, const char* note = "") {
    o.status = status;
    m.status = status;
    m.e2e_s = seconds_since(t0);
    if (served_model) metrics->record(m);
    row.status = status;
    row.finish_reason = finish_reason;
    row.ts_ms = unix_ms();
    row.prompt_tokens = m.prompt_tokens;
    row.completion_tokens = m.generation_tokens;
    row.ttft_ms = m.ttft_s < 0 ? -1 : m.ttft_s * 1000;
    row.duration_ms = m.e2e_s * 1000;
    usage->add(row);
    std::fprintf(stderr, "realm serve: %s %s tenant=%s key=%s model=%s %d %.3f s%s\n", rid.c_str(),
                 row.endpoint.c_str(), tenant.c_str(), who.key.id.c_str(), g.model.c_str(), status,
                 m.e2e_s, note);
  };
  auto refuse = [&](ApiError e, Headers h = {}) {
    o.failed = true;
    o.error = std::move(e);
    o.headers = std::move(h);
    if (g.stream) out->error(o.error, o.headers);
    finish(o.error.status, "error");
    return o;
  };

  if (!cancel) cancel = std::make_shared<std::atomic<bool>>(false);
  lease = models->acquire(g.model, cancel);
  served_model = lease != nullptr;
  if (!lease) {
    return refuse({404, "the model '" + g.model + "' does not exist", "invalid_request_error",
                   "model", "model_not_found"});
  }
  if (!may_use(who.tenant.get(), g.model)) {
    return refuse({403, "this key's tenant may not use the model '" + g.model + "'",
                   "invalid_request_error", "model", "model_not_allowed"});
  }
  if (!who.guest_error.empty()) {
    return refuse({502, "the tenant's guest module cannot be loaded: " + who.guest_error,
                   "server_error", "", "guest_failed"},
                  {{"x-should-retry", "false"}});
  }
  // The Responses API's conversation: the stored history, then this turn.
  Json history = Json::array();
  if (responses) {
    Json& msgs = g.guest["messages"];
    Json turn = Json::array();
    for (size_t i = g.has_instructions ? 1 : 0; i < msgs.size(); ++i) turn.push_back(msgs[i]);
    if (!g.previous_response_id.empty()) {
      std::optional<Json> prev;
      if (local) {
        if (auto it = local->find(g.previous_response_id); it != local->end()) prev = it->second;
      }
      if (!prev) prev = conversations->get(tenant, g.previous_response_id);
      if (!prev) {
        return refuse({400, "previous response '" + g.previous_response_id + "' not found",
                       "invalid_request_error", "previous_response_id",
                       "previous_response_not_found"});
      }
      history = std::move(*prev);
    }
    for (const Json& t : turn) history.push_back(t);
    Json all = Json::array();
    if (g.has_instructions) all.push_back(msgs[0]);
    for (const Json& t : history) all.push_back(t);
    msgs = std::move(all);
  }

  // Count the prompt as the guest will build it, and check it against the context.
  auto prompt = sandbox->prompt_tokens(g.model, g.guest);
  if (!prompt) {
    return refuse({400, "the prompt cannot be built: " + prompt.error().message,
                   "invalid_request_error", ep == Endpoint::COMPLETIONS ? "prompt" : "messages"});
  }
  const int64_t n_prompt = static_cast<int64_t>(prompt->ids.size());
  const int64_t n_ctx = options.n_ctx;
  const char* max_param = ep == Endpoint::RESPONSES ? "max_output_tokens" : "max_tokens";
  if (n_prompt >= n_ctx || (g.max_tokens >= 0 && n_prompt + g.max_tokens > n_ctx)) {
    return refuse(
        {400,
         "this model's context is " + std::to_string(n_ctx) + " tokens; the request has " +
             std::to_string(n_prompt) + " prompt tokens" +
             (g.max_tokens >= 0 ? " and asks for " + std::to_string(g.max_tokens) + " more" : ""),
         "invalid_request_error", g.max_tokens >= 0 ? max_param : "messages",
         "context_length_exceeded"});
  }
  const int64_t want = g.max_tokens >= 0 ? g.max_tokens : n_ctx - n_prompt;
  // The model's KV budget: a request that cannot fit even alone is refused (503); one that fits
  // waits for blocks in the scheduler, never failing for memory others hold.
  if (auto st = sandbox->model_stats(g.model); st && st->max_session_tokens > 0) {
    const int64_t need = n_prompt + (g.max_tokens >= 0 ? std::max<int64_t>(g.max_tokens, 1) : 1);
    if (need > st->max_session_tokens) {
      return refuse({503,
                     "the request needs " + std::to_string(need) +
                         " tokens of KV cache; this model's KV budget holds " +
                         std::to_string(st->max_session_tokens) + " for one request",
                     "server_error", "", "kv_budget_exceeded"},
                    retry_headers(60.0));
    }
  }

  // Admission: the tenant's rate limits, quota, concurrency and queue.
  TenantQuota quota;
  if (who.tenant) {
    quota.rpm = who.tenant->rpm;
    quota.tpm = who.tenant->tpm;
    quota.daily_tokens = who.tenant->daily_tokens;
    quota.concurrency = who.tenant->concurrency;
  }
  Admission::Result adm = admission->admit(tenant, quota, n_prompt, want, g.max_tokens >= 0,
                                           [out] { return out->gone(); });
  if (adm.refusal != Refusal::NONE) {
    ApiError e{429, adm.message, "rate_limit_exceeded", "", "rate_limit_exceeded"};
    Headers h = adm.headers;
    switch (adm.refusal) {
      case Refusal::RATE_REQUESTS:
      case Refusal::RATE_TOKENS:
        e.type = adm.refusal == Refusal::RATE_REQUESTS ? "requests" : "tokens";
        for (auto& x : retry_headers(adm.retry_after_s)) h.push_back(x);
        metrics->rate_limited(tenant, refusal_name(adm.refusal));
        break;
      case Refusal::TOO_LARGE:
        e.type = "tokens";
        h.emplace_back("x-should-retry", "false");
        metrics->rate_limited(tenant, refusal_name(adm.refusal));
        break;
      case Refusal::DAILY_QUOTA:
        e.type = "insufficient_quota";
        e.code = "insufficient_quota";
        h.emplace_back("x-should-retry", "false");
        metrics->rate_limited(tenant, refusal_name(adm.refusal));
        break;
      case Refusal::ABANDONED:
        metrics->admission_rejected(refusal_name(adm.refusal));
        o.keep = false;
        finish(499, "cancelled", " (client gone while queued)");
        return o;
      default:  // the queues, shutdown
        e = ApiError{503, adm.message, "server_error", "", "overloaded"};
        for (auto& x : retry_headers(adm.retry_after_s)) h.push_back(x);
        metrics->admission_rejected(refusal_name(adm.refusal));
        break;
    }
    return refuse(e, h);
  }
  m.queue_s = adm.queue_s;
  o.headers = adm.headers;
  g.guest["max_tokens"] = adm.max_tokens;
  // The session holds prompt + max tokens (the guest ABI's n_ctx 0), within the checked context:
  // a short request does not allocate (and clear) a whole context of KV cache.
  g.guest["n_ctx"] = 0;

  auto channel = std::make_shared<EventChannel>();
  channel->cap = options.max_buffered_events;
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
      tenant, g.guest.dump(),
      [channel](int kind, std::string_view json) { return channel->push(kind, json); }, cancel);
  std::thread waiter([&future, channel, lease = std::move(lease)]() mutable {
    future.wait();
    lease.reset();  // the model is not needed to write what is left to the client
    std::lock_guard<std::mutex> lock(channel->mu);
    channel->done = true;
    channel->cv.notify_all();
  });

  Shaper shaper{ep, (ep == Endpoint::CHAT ? "chatcmpl-" : "cmpl-") + random_hex(24), g.model,
                unix_now()};
  ResponseShaper rs{response_id, "msg_" + random_hex(32), g.model, unix_now()};
  int64_t sequence = 0;
  bool gone = false;
  auto emit = [&](Json j) {
    if (gone || !g.stream) return;
    if (responses) j["sequence_number"] = sequence++;
    if (!out->event(j, o.headers)) {
      gone = true;
      {
        std::lock_guard<std::mutex> lock(channel->mu);
        channel->gone = true;
      }
      sandbox->cancel(cancel);
    }
  };
  const Json part0 = {{"type", "output_text"}, {"text", ""}, {"annotations", Json::array()}};
  if (responses && g.stream) {  // the preamble: the response, its message item, its text part
    const Json in_progress = rs.response("in_progress", "", 0, 0, false);
    emit({{"type", "response.created"}, {"response", in_progress}});
    emit({{"type", "response.in_progress"}, {"response", in_progress}});
    emit({{"type", "response.output_item.added"},
          {"output_index", 0},
          {"item", rs.message_item("in_progress", "")}});
    emit(rs.part_event("response.content_part.added", {{"part", part0}}));
  }
  std::string text, guest_finish;
  Json entries = Json::array();  // logprobs of every token
  auto piece = [&](int32_t id) {
    auto p = sandbox->token_piece(g.model, id);
    return p ? *p : std::string();
  };
  bool first_chunk = true, timed_out = false;
  auto last_token = t0;
  const auto deadline = t0 + options.request_timeout;
  for (;;) {
    std::pair<int, std::string> ev;
    {
      std::unique_lock<std::mutex> lock(channel->mu);
      if (!channel->cv.wait_until(lock, deadline,
                                  [&] { return !channel->events.empty() || channel->done; })) {
        timed_out = true;
        lock.unlock();
        sandbox->cancel(cancel);
        lock.lock();
        channel->cv.wait(lock, [&] { return !channel->events.empty() || channel->done; });
      }
      if (channel->events.empty()) break;  // done and drained
      ev = std::move(channel->events.front());
      channel->events.pop_front();
    }
    const Json j = Json::parse(ev.second, nullptr, false);  // checked by the host
    if (ev.first == 2) {
      guest_finish = j.value("finish_reason", std::string("stop"));
      continue;
    }
    Json entry;
    if (j.value("id", -1) >= 0) {
      ++m.generation_tokens;
      const auto now = Clock::now();
      if (m.ttft_s < 0) {
        m.ttft_s = std::chrono::duration<double>(now - t0).count();
      } else {
        m.itl_s.push_back(std::chrono::duration<double>(now - last_token).count());
      }
      last_token = now;
      if (g.logprobs && j.contains("logprob")) {
        entry = token_entry(j, piece);
        entries.push_back(entry);
      }
    }
    const std::string chunk_text = j.value("text", std::string());
    const size_t offset = text.size();
    text += chunk_text;
    if (g.stream && (!chunk_text.empty() || !entry.is_null())) {
      const Json lp = entry.is_null() ? Json() : Json::array({entry});
      if (responses) {
        emit(rs.part_event(
            "response.output_text.delta",
            {{"delta", chunk_text}, {"logprobs", lp.is_null() ? Json::array() : lp}}));
      } else {
        emit(shaper.chunk(chunk_text, first_chunk,
                          lp.is_null() ? Json() : shaper.logprobs_of(lp, offset)));
      }
      first_chunk = false;
    }
  }
  waiter.join();
  const sandbox::RequestResult r = future.get();
  m.prompt_tokens = r.prompt_tokens;
  shaper.cached_tokens = rs.cached_tokens = row.cached_tokens = r.cached_tokens;
  adm.ticket->finish(m.prompt_tokens + m.generation_tokens);
  if (gone || channel->gone) {
    o.keep = false;
    finish(499, "cancelled",
           channel->overflow ? " (the client read too slowly)" : " (client gone)");
    return o;
  }
  if (timed_out) {
    ApiError e{504,
               "the request ran past the server's limit of " +
                   std::to_string(options.request_timeout.count()) + " s",
               "server_error", "", "timeout"};
    o.failed = true;
    o.error = e;
    if (g.stream) out->error(e, o.headers);
    finish(504, "error");
    return o;
  }
  // Cancelled (response.cancel, or shutdown past the grace period) with the client still there:
  // the response ends as it stands.
  const bool cancelled = r.error == sandbox::RequestError::CANCELLED || guest_finish == "cancelled";
  if (!r.ok() && !cancelled) {
    const ApiError e = api_error_of(r, rid);
    if (e.status >= 500) {
      std::fprintf(stderr, "realm serve: %s: %s\n", rid.c_str(), r.message.c_str());
      if (e.status == 502)
        metrics->sandbox_fault(std::string(sandbox::request_error_name(r.error)));
    }
    o.failed = true;
    o.error = e;
    if (e.status == 502) o.headers.emplace_back("x-should-retry", "false");
    if (g.stream) out->error(e, o.headers);
    finish(e.status, "error");
    return o;
  }
  const std::string fin = finish_reason(guest_finish);
  const int64_t pt = m.prompt_tokens, ct = m.generation_tokens;
  if (responses) {
    const std::string status = cancelled         ? "cancelled"
                               : fin == "length" ? "incomplete"
                                                 : "completed";
    Json final_response = rs.response(status, text, pt, ct, true);
    if (g.logprobs) final_response["output"][0]["content"][0]["logprobs"] = entries;
    history.push_back({{"role", "assistant"}, {"content", text}});
    if (g.store) {
      conversations->put(tenant, response_id, history);
    } else if (local) {
      if (local->size() >= 256) local->erase(local->begin());
      (*local)[response_id] = history;
    }
    if (g.stream) {
      Json part = part0;
      part["text"] = text;
      if (g.logprobs) part["logprobs"] = entries;
      emit(rs.part_event("response.output_text.done",
                         {{"text", text}, {"logprobs", g.logprobs ? entries : Json::array()}}));
      emit(rs.part_event("response.content_part.done", {{"part", part}}));
      emit({{"type", "response.output_item.done"},
            {"output_index", 0},
            {"item", final_response["output"][0]}});
      emit({{"type", status == "completed" ? "response.completed" : "response.incomplete"},
            {"response", final_response}});  // (a cancelled response: incomplete, "cancelled")
    } else {
      o.body = std::move(final_response);
    }
  } else if (!g.stream) {
    o.body =
        shaper.response(text, fin, pt, ct, g.logprobs ? shaper.logprobs_of(entries, 0) : Json());
  } else {
    if (first_chunk) emit(shaper.chunk("", true));  // nothing was streamed: the role still first
    emit(shaper.final_chunk(fin));
    if (g.include_usage) emit(shaper.usage_chunk(pt, ct));
  }
  if (g.stream && !gone && !out->end()) gone = true;
  if (gone) {
    o.keep = false;
    finish(499, "cancelled", " (client gone)");
    return o;
  }
  finish(200, cancelled ? "cancelled" : fin);
  return o;
}

// ---- HTTP -------------------------------------------------------------------------------------

namespace {

// An SSE response on a connection's socket.
struct SseOut : StreamOut {
  TimedSocket& sock;
  unsigned version;
  std::string rid;
  bool keep;
  bool responses;  // typed events ("event: type"), no [DONE]
  bool failed = false;
  http::response<http::empty_body> head;
  http::response_serializer<http::empty_body> serializer{head};

  SseOut(TimedSocket& s, unsigned v, std::string r, bool k, bool resp)
      : sock(s), version(v), rid(std::move(r)), keep(k), responses(resp) {}

  bool write(const std::string& data) {
    beast::error_code ec;
    net::write(sock, http::make_chunk(net::buffer(data)), ec);
    if (ec) failed = true;
    return !failed;
  }
  bool begin(const Headers& headers) {
    if (started) return !failed;
    started = true;
    head.version(version);
    head.result(http::status::ok);
    head.set(http::field::server, "realm");
    head.set(http::field::content_type, "text/event-stream");
    head.set(http::field::cache_control, "no-cache");
    head.set("x-request-id", rid);
    for (const auto& [k, v] : headers) head.set(k, v);
    head.keep_alive(keep);
    head.chunked(true);
    beast::error_code ec;
    http::write_header(sock, serializer, ec);
    if (ec) failed = true;
    return !failed;
  }
  bool event(const Json& j, const Headers& headers) override {
    if (failed || !begin(headers)) return false;
    std::string data;
    if (responses) data = "event: " + j.value("type", std::string("error")) + "\n";
    data += "data: " + dump(j) + "\n\n";
    return write(data);
  }
  void error(const ApiError& e, const Headers& headers) override {
    if (!started || failed) return;  // before the stream: the caller sends a plain error
    (void)headers;
    if (responses) {
      event({{"type", "error"},
             {"code", e.code.empty() ? Json() : Json(e.code)},
             {"message", e.message},
             {"param", e.param.empty() ? Json() : Json(e.param)}},
            {});
    } else {
      event(error_json(e), {});
      write("data: [DONE]\n\n");
    }
    beast::error_code ec;
    net::write(sock, http::make_chunk_last(), ec);
    failed = true;  // the connection closes after an error mid-stream
  }
  bool end() override {
    if (failed) return false;
    if (!responses && !write("data: [DONE]\n\n")) return false;
    beast::error_code ec;
    net::write(sock, http::make_chunk_last(), ec);
    return !ec;
  }
  bool gone() override { return peer_closed(sock.fd()); }
};

}  // namespace

void Server::Impl::serve_connection(tcp::socket raw) {
  // Responses and stream events go out as soon as they are written (no Nagle delay waiting for
  // the client's delayed ACK).
  beast::error_code nodelay_ec;
  raw.set_option(tcp::no_delay(true), nodelay_ec);
  // A bounded send buffer (the kernel doubles it): a client that stops reading holds at most this
  // much of the server's memory, and its stream stalls into the write deadline instead of
  // filling a multi-megabyte autotuned buffer.
  raw.set_option(net::socket_base::send_buffer_size(256 << 10), nodelay_ec);
  TimedSocket sock(std::move(raw), options.write_timeout);
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
    parser.body_limit(options.max_body_bytes);
    // One deadline for the whole request (headers and body; an idle keep-alive connection's
    // wait for the next one too): a client trickling bytes cannot hold the connection past it.
    sock.read_deadline(Clock::now() + options.read_timeout);
    beast::error_code ec;
    http::read(sock, buffer, parser, ec);
    if (ec == net::error::timed_out) {
      if (parser.got_some() || buffer.size() > 0) {
        send_error(sock, 11,
                   {408, "the request did not arrive within " +
                             std::to_string(options.read_timeout.count()) + " s"},
                   random_hex(16), false);
      }
      break;
    }
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      ApiError e;
      e.status = ec == http::error::body_limit ? 413 : 431;
      e.message =
          ec == http::error::body_limit
              ? "the request body exceeds " + std::to_string(options.max_body_bytes) + " bytes"
              : "the request headers exceed " + std::to_string(options.max_header_bytes) + " bytes";
      send_error(sock, 11, e, random_hex(16), false);
      // The client may still be sending the body: read and drop it for a moment, so that it sees
      // the answer instead of a reset connection.
      beast::error_code ignored;
      sock.raw().shutdown(tcp::socket::shutdown_send, ignored);
      sock.read_deadline(Clock::now() + std::chrono::seconds(1));
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
        send_error(sock, 11, {400, "malformed HTTP request: " + ec.message()}, random_hex(16),
                   false);
      }
      break;
    }
    auto& req = parser.get();
    if (websocket::is_upgrade(req)) {
      const std::string target(req.target());
      if (target.substr(0, target.find('?')) == "/v1/responses") {
        beast::error_code blocking_ec;
        sock.raw().non_blocking(false, blocking_ec);
        serve_websocket(std::move(sock.raw()), parser.release());
        return;
      }
      send_error(sock, req.version(), {404, "no WebSocket endpoint at " + target}, random_hex(16),
                 false);
      break;
    }
    if (!handle(sock, req) || stopping) break;
  }
  beast::error_code ignored;
  sock.raw().shutdown(tcp::socket::shutdown_both, ignored);
}

std::vector<Metrics::Gauge> Server::Impl::gauges() const {
  std::vector<Metrics::Gauge> g;
  int running = 0;
  {
    std::lock_guard<std::mutex> lock(const_cast<std::mutex&>(mu));
    running = active_requests;
  }
  const double sandbox_waiting = static_cast<double>(sandbox->queued());
  g.push_back({"realm:num_requests_running", "Generation requests running in a guest.", "",
               running - sandbox_waiting});
  g.push_back({"realm:num_requests_waiting",
               "Generation requests waiting for a concurrency slot or a sandbox worker.", "",
               static_cast<double>(admission->waiting()) + sandbox_waiting});
  for (const std::string& name : models->names()) {
    // An engine that cannot be read (an unload in progress) shows zeros.
    auto read = sandbox->model_stats(name);
    const engine::EngineStats st = read ? *read : engine::EngineStats{};
    const std::string l = "model=\"" + prometheus_label(name) + "\"";
    const auto d = [](auto x) { return static_cast<double>(x); };
    const double usage = st.kv_blocks > 0 ? d(st.kv_blocks_used) / d(st.kv_blocks) : 0.0;
    const Metrics::Gauge rows[] = {
        {"realm:active_sessions", "Open sessions (KV caches) on the model.", l, d(st.sessions)},
        {"realm:kv_cache_bytes", "Bytes of KV cache blocks held by the model's sessions.", l,
         d(st.kv_blocks_used) * d(st.kv_block_bytes)},
        {"realm:kv_cache_usage_perc",
         "Fraction of the model's KV block pool held by sessions (0 to 1).", l, usage},
        {"realm:kv_cache_cached_blocks",
         "KV blocks of the model held by the prefix cache (in use or evictable).", l,
         d(st.kv_blocks_cached)},
        {"realm:num_sequences_running", "Sequences admitted by the model's scheduler.", l,
         d(st.running)},
        {"realm:num_sequences_waiting",
         "Sequences waiting for admission (KV blocks or a slot) on the model.", l, d(st.waiting)},
        {"realm:num_preemptions_total",
         "Sequences preempted (blocks given back, recomputed later) on the model.", l,
         d(st.preemptions), true},
        {"realm:engine_passes_total",
         "Forward passes run on the model (each serves every sequence in its batch).", l,
         d(st.batches), true},
        {"realm:engine_tokens_total", "Tokens carried by the model's forward passes.", l,
         d(st.tokens), true},
        {"realm:prefix_cache_queries_total",
         "Prompt tokens looked up in the prefix cache on the model.", l, d(st.prefix_queries),
         true},
        {"realm:prefix_cache_hits_total",
         "Prompt tokens found in the prefix cache (not recomputed) on the model.", l,
         d(st.prefix_hits), true},
    };
    g.insert(g.end(), std::begin(rows), std::end(rows));
  }
  std::stable_sort(g.begin(), g.end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
  return g;
}

AdminReply Server::Impl::admin_models(const std::string& method, const std::string& path,
                                      const std::string& query, const std::string& body) {
  if (path == "/admin/models") {
    if (method == "GET") return {200, {{"object", "list"}, {"data", models->list()}}, false};
    if (method != "POST") return bad("method " + method + " is not allowed on " + path, 405);
    Json req = Json::parse(body, nullptr, false);
    if (req.is_discarded() || !req.is_object()) return bad("the body is not a JSON object");
    for (const char* f : {"name", "model"}) {
      if (!req.contains(f) || !req[f].is_string() || req[f].get<std::string>().empty()) {
        return bad(std::string("'") + f + "' must be a non-empty string");
      }
    }
    if (req.contains("chat_template") && !req["chat_template"].is_string()) {
      return bad("'chat_template' must be a string (Jinja2 source)");
    }
    const std::string name = req["name"], source = req["model"];
    Expected<ServedModel> spec = ServedModel{name, source, source, "", "", ""};
    if (options.resolve_model) spec = options.resolve_model(name, source);
    if (!spec) return error_reply(spec.error());
    spec->chat_template = req.value("chat_template", std::string());
    auto loaded = models->load(*spec);
    if (!loaded) return error_reply(loaded.error());
    std::fprintf(stderr, "realm serve: model '%s' loaded from %s in %.0f ms (packed weights: %s)\n",
                 name.c_str(), spec->path.c_str(), (*loaded)["load_ms"].get<double>(),
                 (*loaded)["pack_cache"].get<std::string>().c_str());
    return {201, *loaded, false};
  }
  const std::string name = url_decode(path.substr(std::string("/admin/models/").size()));
  if (method == "GET") {
    for (const Json& m : models->list()) {
      if (m["name"] == name) return {200, m, false};
    }
    return bad("the model '" + name + "' is not served", 404);
  }
  if (method != "DELETE") return bad("method " + method + " is not allowed on " + path, 405);
  auto timeout = std::chrono::milliseconds(options.unload_timeout);
  if (const std::string t = query_value(query, "timeout_s"); !t.empty()) {
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    if (end == t.c_str() || *end != '\0' || !(v >= 0 && v <= 3600)) {
      return bad("timeout_s must be a number of seconds in [0, 3600], got '" + t + "'");
    }
    timeout = std::chrono::milliseconds(static_cast<int64_t>(v * 1000));
  }
  auto u = models->unload(name, timeout);
  if (!u) return error_reply(u.error());
  std::fprintf(stderr, "realm serve: model '%s' unloaded (%d running, %d cancelled, %.3f s)\n",
               name.c_str(), u->waited, u->cancelled, u->seconds);
  return {200,
          {{"name", name},
           {"unloaded", true},
           {"waited", u->waited},
           {"cancelled", u->cancelled},
           {"seconds", u->seconds}},
          false};
}

bool Server::Impl::handle(TimedSocket& sock, const http::request<http::string_body>& req) {
  const std::string rid = random_hex(16);
  const auto t0 = Clock::now();
  const std::string target(req.target());
  const std::string path = target.substr(0, target.find('?'));
  const std::string query =
      target.find('?') == std::string::npos ? std::string() : target.substr(target.find('?') + 1);
  const bool keep = req.keep_alive() && !stopping;
  const auto method = req.method();
  const unsigned version = req.version();
  bool ok = true;
  int status = 200;
  auto reply = [&](http::status s, const Json& body) {
    status = static_cast<int>(s);
    ok = send(sock, version, s, dump(body), rid, keep);
  };
  auto error = [&](const ApiError& e) {
    status = e.status;
    ok = send_error(sock, version, e, rid, keep);
  };
  auto only = [&](http::verb v) {
    if (method == v) return true;
    error({405, "method " + std::string(req.method_string()) + " is not allowed on " + path});
    return false;
  };
  // The caller, for the routes that need a key.
  auto caller = [&]() -> std::optional<Identity> {
    auto who = authenticate(presented_key(req));
    if (auto* e = std::get_if<ApiError>(&who)) {
      error(*e);
      return std::nullopt;
    }
    return std::get<Identity>(who);
  };
  if (path == "/health") {
    if (only(http::verb::get)) reply(http::status::ok, {{"status", "ok"}});
  } else if (path == "/ready") {
    if (only(http::verb::get)) {
      if (stopping) {
        error({503, "shutting down", "server_error"});
      } else {
        reply(http::status::ok, {{"status", "ready"}, {"models", models->names()}});
      }
    }
  } else if (path == "/metrics") {
    if (only(http::verb::get)) {
      status = 200;
      ok = send(sock, version, http::status::ok, metrics->render(gauges()), rid, keep, {},
                "text/plain; version=0.0.4");
    }
  } else if (path == "/v1/models" || path.rfind("/v1/models/", 0) == 0) {
    if (only(http::verb::get)) {
      if (auto who = caller()) {
        if (path == "/v1/models") {
          Json data = Json::array();
          for (const std::string& name : models->names()) {
            if (may_use(who->tenant.get(), name)) data.push_back(model_json(name));
          }
          reply(http::status::ok, {{"object", "list"}, {"data", data}});
        } else {
          const std::string id = path.substr(11);
          if (has_model(id) && may_use(who->tenant.get(), id)) {
            reply(http::status::ok, model_json(id));
          } else {
            error({404, "the model '" + id + "' does not exist", "invalid_request_error", "model",
                   "model_not_found"});
          }
        }
      }
    }
  } else if (path == "/v1/completions" || path == "/v1/chat/completions" ||
             path == "/v1/responses") {
    if (only(http::verb::post)) {
      const Endpoint ep = path == "/v1/completions"        ? Endpoint::COMPLETIONS
                          : path == "/v1/chat/completions" ? Endpoint::CHAT
                                                           : Endpoint::RESPONSES;
      ok = handle_generation(sock, req, ep, rid);
      status = 0;  // logged by generate
    }
  } else if (path.rfind("/admin/", 0) == 0 || path == "/admin") {
    if (!store) {
      error({404, "the admin API needs a store (this server runs with --no-auth)"});
    } else {
      auto who = directory->authenticate(presented_key(req));
      if (!who || !who->key.admin) {
        error({401, "the admin API needs an admin key (realm keys create --admin)",
               "invalid_request_error", "", "invalid_api_key"});
      } else {
        AdminReply a =
            path == "/admin/models" || path.rfind("/admin/models/", 0) == 0
                ? admin_models(std::string(req.method_string()), path, query, req.body())
                : admin_request(*store, std::string(req.method_string()), path, query, req.body());
        if (a.changed) {
          if (auto st = directory->reload(); !st) {
            std::fprintf(stderr, "realm serve: reload after an admin change: %s\n",
                         st.error().message.c_str());
          }
        }
        status = a.status;
        ok = send(sock, version, static_cast<http::status>(a.status), dump(a.body), rid, keep);
      }
    }
  } else {
    error({404, "no route " + std::string(req.method_string()) + " " + path});
  }
  if (status != 0) {
    std::fprintf(stderr, "realm serve: %s %s %s %d %.3f s\n", rid.c_str(),
                 std::string(req.method_string()).c_str(), path.c_str(), status, seconds_since(t0));
  }
  return ok && keep;
}

bool Server::Impl::handle_generation(TimedSocket& sock, const http::request<http::string_body>& req,
                                     Endpoint ep, const std::string& rid) {
  const bool keep = req.keep_alive() && !stopping;
  auto who = authenticate(presented_key(req));
  if (auto* e = std::get_if<ApiError>(&who)) return send_error(sock, req.version(), *e, rid, keep);
  auto parsed = parse_gen_request(ep, req.body());
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    std::fprintf(stderr, "realm serve: %s POST %s %d (bad request)\n", rid.c_str(),
                 std::string(req.target()).c_str(), e->status);
    return send_error(sock, req.version(), *e, rid, keep);
  }
  SseOut sse(sock, req.version(), rid, keep, ep == Endpoint::RESPONSES);
  const std::string response_id = "resp_" + random_hex(32);
  Outcome o = generate(std::get<Identity>(who), std::move(std::get<GenRequest>(parsed)), rid,
                       response_id, &sse, nullptr, nullptr);
  if (sse.started) return o.keep && !sse.failed && keep;
  if (o.status == 499) return false;
  if (o.failed) return send_error(sock, req.version(), o.error, rid, keep, o.headers) && keep;
  return send(sock, req.version(), http::status::ok, dump(o.body), rid, keep, o.headers) && keep;
}

// ---- WebSocket (the Responses API's WebSocket mode) -------------------------------------------

namespace {

// One WebSocket connection: its reads and writes run on a private io_context on the connection's
// thread; lanes (one per stream_id) run their generations on their own threads and post frames.
struct WsConn : std::enable_shared_from_this<WsConn> {
  net::io_context ioc;
  websocket::stream<tcp::socket> ws;
  beast::flat_buffer in;
  std::deque<std::string> out;
  size_t out_bytes = 0;
  bool writing = false;
  std::atomic<bool> closed{false};
  std::atomic<int> close_code{0};  // a close the server wants to send

  std::mutex mu;  // lanes, responses, local store
  struct Lane {
    std::deque<Json> pending;
    bool running = false;
    std::thread thread;
  };
  static constexpr size_t kMaxLanes = 64, kMaxPending = 64;
  std::map<std::string, Lane> lanes;
  std::map<std::string, std::shared_ptr<std::atomic<bool>>> running;  // response id -> cancel
  std::map<std::string, Json> local;  // store: false responses of this connection
  std::condition_variable lanes_cv;
  int active_lanes = 0;
  static constexpr size_t kMaxOutBytes = 8u << 20;

  bool close_wanted = false;
  websocket::close_reason close_why;

  WsConn() : ws(ioc) {}

  // Thread-safe: queues a frame; false when the connection is closed or the reader is too slow.
  bool send(std::string frame) {
    if (closed) return false;  // (frames queued before a close still go out)
    {
      std::lock_guard<std::mutex> lock(mu);
      if (out_bytes > kMaxOutBytes) return false;
      out_bytes += frame.size();
    }
    net::post(ioc, [self = shared_from_this(), f = std::move(frame)]() mutable {
      self->out.push_back(std::move(f));
      if (!self->writing) self->write_next();
    });
    return true;
  }
  void write_next() {
    if (out.empty() || closed) {
      writing = false;
      if (close_wanted && !closed.exchange(true)) {
        ws.async_close(close_why, [self = shared_from_this()](beast::error_code) {});
      }
      return;
    }
    writing = true;
    ws.text(true);
    ws.async_write(net::buffer(out.front()),
                   [self = shared_from_this()](beast::error_code ec, size_t) {
                     {
                       std::lock_guard<std::mutex> lock(self->mu);
                       self->out_bytes -= self->out.front().size();
                     }
                     self->out.pop_front();
                     if (ec) {
                       self->closed = true;
                       self->writing = false;
                       return;
                     }
                     self->write_next();
                   });
  }
  // Closes after the frames already queued are written.
  void close(websocket::close_code code, const std::string& reason) {
    net::post(ioc, [self = shared_from_this(), code, reason] {
      if (self->close_wanted || self->closed) return;
      self->close_wanted = true;
      self->close_why = websocket::close_reason(code, reason);
      if (!self->writing) self->write_next();
    });
  }
};

struct WsOut : StreamOut {
  std::shared_ptr<WsConn> conn;
  Json stream_id;  // echoed in every event (null: none)
  bool event(const Json& j, const Headers&) override {
    started = true;
    Json e = j;
    if (!stream_id.is_null()) e["stream_id"] = stream_id;
    return conn->send(dump(e));
  }
  void error(const ApiError& err, const Headers& headers) override {
    Json h = Json::object();
    for (const auto& [k, v] : headers) h[k] = v;
    Json e = {{"type", "error"},
              {"status", err.status},
              {"error",
               {{"type", err.type},
                {"code", err.code.empty() ? Json() : Json(err.code)},
                {"message", err.message},
                {"param", err.param.empty() ? Json() : Json(err.param)},
                {"headers", h}}}};
    if (!stream_id.is_null()) e["stream_id"] = stream_id;
    conn->send(dump(e));
    if (err.status == 503) conn->close(websocket::close_code::try_again_later, "overloaded");
  }
  bool end() override { return !conn->closed; }
  bool gone() override { return conn->closed; }
};

}  // namespace

void Server::Impl::serve_websocket(tcp::socket sock, http::request<http::string_body> req) {
  // The key: Authorization: Bearer, or (browsers) the subprotocol openai-insecure-api-key.KEY.
  std::string key = presented_key(req);
  std::string protocol;
  if (auto p = req.find(http::field::sec_websocket_protocol); p != req.end()) {
    std::string list(p->value());
    size_t pos = 0;
    while (pos <= list.size()) {
      size_t comma = list.find(',', pos);
      if (comma == std::string::npos) comma = list.size();
      std::string item = list.substr(pos, comma - pos);
      while (!item.empty() && item.front() == ' ') item.erase(item.begin());
      while (!item.empty() && item.back() == ' ') item.pop_back();
      const std::string prefix = "openai-insecure-api-key.";
      if (item.rfind(prefix, 0) == 0) {
        if (key.empty()) key = item.substr(prefix.size());
        protocol = item;
      } else if (protocol.empty() && item == "realm") {
        protocol = item;
      }
      pos = comma + 1;
    }
  }
  const bool v6 = sock.local_endpoint().address().is_v6();
  auto conn = std::make_shared<WsConn>();
  {
    beast::error_code ec;
    conn->ws.next_layer().assign(v6 ? tcp::v6() : tcp::v4(), sock.release(), ec);
    if (ec) return;
  }
  conn->ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  conn->ws.read_message_max(options.max_body_bytes);
  conn->ws.set_option(websocket::stream_base::decorator([protocol](websocket::response_type& res) {
    res.set(http::field::server, "realm");
    if (!protocol.empty()) res.set(http::field::sec_websocket_protocol, protocol);
  }));
  auto who_or = authenticate(key);
  std::shared_ptr<Identity> who;
  if (auto* id = std::get_if<Identity>(&who_or)) who = std::make_shared<Identity>(*id);

  WsConn* c = conn.get();
  std::function<void()> read_next;
  auto on_frame = [this, c, who](const std::string& text) {
    const Json f = Json::parse(text, nullptr, false);
    auto bad_frame = [&](const std::string& message, Json stream_id = Json()) {
      WsOut o;
      o.conn = c->shared_from_this();
      o.stream_id = stream_id;
      o.error({400, message}, {});
    };
    if (f.is_discarded() || !f.is_object()) return bad_frame("a frame must be a JSON object");
    const Json stream_id = f.contains("stream_id") && (f["stream_id"].is_string() ||
                                                       f["stream_id"].is_number_integer())
                               ? f["stream_id"]
                               : Json();
    const std::string type =
        f.value("type", Json()).is_string() ? f["type"].get<std::string>() : "";
    if (type == "response.cancel") {
      const std::string id =
          f.value("response_id", Json()).is_string() ? f["response_id"].get<std::string>() : "";
      std::lock_guard<std::mutex> lock(c->mu);
      auto it = c->running.find(id);
      if (it == c->running.end()) {
        return bad_frame("no response '" + id + "' is running on this connection", stream_id);
      }
      sandbox->cancel(it->second);
      return;
    }
    if (type != "response.create") {
      return bad_frame("unknown frame type " + dump(f.value("type", Json())) +
                           " (expected response.create or response.cancel)",
                       stream_id);
    }
    const std::string lane = stream_id.is_null() ? "" : dump(stream_id);
    std::lock_guard<std::mutex> lock(c->mu);
    if (!c->lanes.count(lane) && c->lanes.size() >= WsConn::kMaxLanes) {
      for (auto it = c->lanes.begin(); it != c->lanes.end();) {  // reclaim idle lanes
        if (it->second.running) {
          ++it;
          continue;
        }
        if (it->second.thread.joinable()) it->second.thread.join();
        it = c->lanes.erase(it);
      }
      if (c->lanes.size() >= WsConn::kMaxLanes) {
        return bad_frame("at most " + std::to_string(WsConn::kMaxLanes) +
                             " stream_id lanes run at once on one connection",
                         stream_id);
      }
    }
    WsConn::Lane& l = c->lanes[lane];
    if (l.pending.size() >= WsConn::kMaxPending) {
      return bad_frame(
          "at most " + std::to_string(WsConn::kMaxPending) + " requests wait in one stream_id lane",
          stream_id);
    }
    l.pending.push_back(f);
    if (l.running) return;
    if (l.thread.joinable()) l.thread.join();  // its last request has ended
    l.running = true;
    ++c->active_lanes;
    // The lane's thread runs its requests in order.
    l.thread = std::thread([this, c, who, lane, stream_id] {
      for (;;) {
        Json frame;
        {
          std::lock_guard<std::mutex> lk(c->mu);
          WsConn::Lane& ln = c->lanes[lane];
          if (ln.pending.empty() || c->closed) {
            ln.running = false;
            ln.pending.clear();
            --c->active_lanes;
            c->lanes_cv.notify_all();
            return;
          }
          frame = std::move(ln.pending.front());
          ln.pending.pop_front();
        }
        WsOut out;
        out.conn = c->shared_from_this();
        out.stream_id = stream_id;
        const std::string rid = random_hex(16);
        frame.erase("type");
        frame.erase("stream_id");
        frame["stream"] = true;
        auto parsed = parse_gen_request(Endpoint::RESPONSES, dump(frame));
        if (auto* e = std::get_if<ApiError>(&parsed)) {
          out.error(*e, {});
          continue;
        }
        const std::string response_id = "resp_" + random_hex(32);
        auto cancel = std::make_shared<std::atomic<bool>>(false);
        {
          std::lock_guard<std::mutex> lk(c->mu);
          c->running[response_id] = cancel;
        }
        std::map<std::string, Json> local;
        {
          std::lock_guard<std::mutex> lk(c->mu);
          local = c->local;
        }
        generate(*who, std::move(std::get<GenRequest>(parsed)), rid, response_id, &out, cancel,
                 &local);
        std::lock_guard<std::mutex> lk(c->mu);
        c->running.erase(response_id);
        for (auto& [k, v] : local) c->local[k] = std::move(v);
        while (c->local.size() > 256) c->local.erase(c->local.begin());
      }
    });
  };
  read_next = [c, &read_next, on_frame] {
    c->ws.async_read(c->in, [c, &read_next, on_frame](beast::error_code ec, size_t) {
      if (ec) {
        c->closed = true;
        return;
      }
      if (!c->ws.got_text()) {
        c->in.consume(c->in.size());
        WsOut o;
        o.conn = c->shared_from_this();
        o.error({400, "frames must be text (JSON)"}, {});
      } else {
        const std::string text = beast::buffers_to_string(c->in.data());
        c->in.consume(c->in.size());
        on_frame(text);
      }
      if (!c->closed) read_next();
    });
  };
  conn->ws.async_accept(req, [this, c, who, &read_next](beast::error_code ec) {
    if (ec) {
      c->closed = true;
      return;
    }
    if (!who) {
      c->close(websocket::close_code::policy_error, "invalid or missing API key");
      return;
    }
    if (stopping) {
      c->close(websocket::close_code::try_again_later, "shutting down");
      return;
    }
    read_next();
  });
  conn->ioc.run();
  // The client left (or the server closed): stop this connection's requests, wait for its lanes.
  conn->closed = true;
  {
    std::unique_lock<std::mutex> lock(conn->mu);
    for (auto& [id, flag] : conn->running) sandbox->cancel(flag);
    conn->lanes_cv.wait(lock, [&] { return conn->active_lanes == 0; });
  }
  for (auto& [id, lane] : conn->lanes) {
    if (lane.thread.joinable()) lane.thread.join();
  }
  beast::error_code ignored;
  conn->ws.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
}

// ---- lifecycle --------------------------------------------------------------------------------

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  stop();
}

Expected<std::unique_ptr<Server>> Server::create(ServerOptions options,
                                                 std::vector<ServedModel> models,
                                                 std::span<const uint8_t> default_guest) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->metrics = std::make_unique<Metrics>(options.max_tenant_labels);
  if (!options.no_auth || !options.db_path.empty()) {
    auto store = Store::open(options.db_path.empty() ? default_db_path() : options.db_path,
                             options.secret_path);
    if (!store) return store.take_error();
    impl->store = std::move(*store);
  }
  sandbox::SandboxOptions so;
  so.n_workers = std::max(8, options.max_connections);
  auto sb = sandbox::Sandbox::create(so);
  if (!sb) return sb.take_error();
  impl->sandbox = std::move(*sb);
  ModelRegistry::Options mo;
  mo.engine = options.engine;
  mo.chat_template = options.chat_template;
  mo.memory_budget = options.model_memory_budget;
  impl->models = std::make_unique<ModelRegistry>(*impl->sandbox, mo);
  for (const auto& m : models) {
    if (m.name.empty()) return make_error("a model needs a name (--model NAME=PATH)");
    if (impl->models->has(m.name)) {
      return make_error("the model name '", m.name, "' is used twice");
    }
    auto loaded = impl->models->load(m);
    if (!loaded) return loaded.take_error();
    std::fprintf(stderr, "realm serve: model '%s' loaded from %s in %.0f ms (packed weights: %s)\n",
                 m.name.c_str(), m.path.c_str(), (*loaded)["load_ms"].get<double>(),
                 (*loaded)["pack_cache"].get<std::string>().c_str());
  }
  DirectoryOptions dopt;
  dopt.n_ctx = options.n_ctx;
  auto dir = Directory::create(options.no_auth ? nullptr : impl->store.get(), impl->sandbox.get(),
                               default_guest, dopt);
  if (!dir) return dir.take_error();
  impl->directory = std::move(*dir);
  Store* store = impl->store.get();
  impl->admission = std::make_unique<Admission>(
      options.queue, [store](const std::string& tenant, int64_t since_s) -> int64_t {
        if (!store) return 0;
        auto n = store->tokens_since(tenant, since_s * 1000);
        return n ? *n : 0;
      });
  impl->usage = std::make_unique<UsageLog>(store);
  impl->conversations =
      std::make_unique<Conversations>(options.responses_per_tenant, options.response_ttl);
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
      TimedSocket timed(std::move(sock), std::chrono::milliseconds(1000));
      s.send(timed, 11, http::status::service_unavailable,
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
  // closed; run() returns when every connection has ended and the usage rows are written.
  std::unique_lock<std::mutex> lock(s.mu);
  s.cv.wait_for(lock, s.options.grace, [&] { return s.active_requests == 0; });
  s.admission->shutdown();
  for (const auto& c : s.cancels) s.sandbox->cancel(c);
  for (int fd : s.fds) ::shutdown(fd, SHUT_RDWR);
  s.cv.wait(lock, [&] { return s.connections == 0; });
  lock.unlock();
  if (!s.usage->flush()) {
    std::fprintf(stderr, "realm serve: %zu usage rows could not be written\n", s.usage->pending());
  }
}

void Server::stop() {
  Impl& s = *impl_;
  if (s.stopping.exchange(true)) return;
  beast::error_code ec;
  s.acceptor.cancel(ec);
  ::shutdown(s.acceptor.native_handle(), SHUT_RDWR);
}

}  // namespace realm::server
