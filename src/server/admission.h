// Admission of requests per tenant, before they reach the sandbox: token buckets for requests/min
// and tokens/min, a daily token quota, a concurrency limit with a bounded queue per tenant and in
// total. Tokens are reserved at admission (prompt + max tokens) and the unused part is returned
// when the request ends, so concurrent requests cannot overdraw a nearly empty bucket. A request
// over the daily quota's remainder is admitted with its max tokens cut to what is left (it ends by
// length); one that cannot even fit its prompt is refused.
//
// Fair scheduling *between* admitted requests is the engine's (the next layer); here a tenant's
// flood only fills its own queue: past `max_waiting_per_tenant` it is refused while other tenants
// still get places in the shared queue.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace realm::server {

struct TenantQuota {
  int64_t rpm = 0;           // 0: unlimited
  int64_t tpm = 0;           // 0: unlimited
  int64_t daily_tokens = 0;  // 0: unlimited
  int32_t concurrency = 4;
};

struct QueueLimits {
  size_t max_waiting_total = 256;      // requests waiting for a concurrency slot, all tenants
  size_t max_waiting_per_tenant = 64;  // of one tenant
  std::chrono::milliseconds max_wait{60000};  // a request waiting longer gets 503
};

enum class Refusal {
  NONE,
  RATE_REQUESTS,  // requests/min bucket empty (429, retry after)
  RATE_TOKENS,    // tokens/min bucket cannot cover prompt + max tokens (429, retry after)
  TOO_LARGE,      // prompt + max tokens exceed the tenant's tokens/min (429, do not retry)
  DAILY_QUOTA,    // the day's tokens are spent (429, do not retry)
  QUEUE_FULL,     // the tenant's or the shared queue is full (503)
  QUEUE_TIMEOUT,  // waited max_wait for a slot (503)
  ABANDONED,      // the client left while waiting
  SHUTDOWN,       // the server is stopping (503)
};
const char* refusal_name(Refusal r);  // "requests", "tokens", "daily_quota", "queue_full", ...

class Admission {
 public:
  // `daily_used(tenant, since_unix_s)`: tokens the tenant used since then (the usage rows), read
  // once per tenant per UTC day.
  Admission(QueueLimits limits, std::function<int64_t(const std::string&, int64_t)> daily_used);
  ~Admission();

  // Holds an admitted request's concurrency slot and reservations; finish() (or the destructor,
  // as if nothing was used) returns them.
  class Ticket {
   public:
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    // The request used `tokens` (prompt + completion): the unused reservation goes back.
    void finish(int64_t tokens);

   private:
    friend class Admission;
    Ticket(Admission* a, std::string tenant, int64_t reserved) noexcept
        : a_(a), tenant_(std::move(tenant)), reserved_(reserved) {}
    Admission* a_;
    std::string tenant_;
    int64_t reserved_;
    bool done_ = false;
  };

  struct Result {
    Refusal refusal = Refusal::NONE;
    std::string message;
    double retry_after_s = 0;  // RATE_* and QUEUE_*: when trying again may succeed
    int64_t max_tokens = 0;    // admitted: the completion tokens the request may produce
    double queue_s = 0;        // time spent waiting for a slot
    // x-ratelimit-{limit,remaining,reset}-{requests,tokens} for tenants with limits.
    std::vector<std::pair<std::string, std::string>> headers;
    std::unique_ptr<Ticket> ticket;  // admitted
  };

  // Admits one request of `prompt_tokens` wanting up to `max_tokens`; `explicit_max` false: the
  // client set no limit, so `max_tokens` is cut to what the tokens/min limit allows instead of
  // refusing. Blocks while the tenant is at its concurrency limit (in its queue), polling
  // `abandoned` (the client left) every 50 ms.
  Result admit(const std::string& tenant, const TenantQuota& quota, int64_t prompt_tokens,
               int64_t max_tokens, bool explicit_max, const std::function<bool()>& abandoned);

  // Wakes every waiting request with SHUTDOWN and refuses new ones.
  void shutdown();
  size_t waiting() const;
  size_t waiting(const std::string& tenant) const;
  int running(const std::string& tenant) const;

  // Clock override for tests (steady seconds and Unix seconds).
  std::function<double()> now_s;
  std::function<int64_t()> unix_s;

 private:
  struct Bucket {
    double tokens = 0;
    double capacity = 0;
    double last = 0;
    bool init = false;
    void refill(double cap, double now);
  };
  struct TenantState {
    Bucket requests, tokens;
    int running = 0;
    size_t waiting = 0;
    uint64_t next_ticket = 0;
    std::deque<uint64_t> order;  // the waiting requests, first come first served
    int64_t day = -1;            // UTC day of day_used
    int64_t day_used = 0;        // tokens used today (finished requests)
    int64_t day_reserved = 0;    // reserved by running or waiting requests
    int64_t tpm = 0;
  };
  void release(const std::string& tenant, int64_t reserved, int64_t used);

  QueueLimits limits_;
  std::function<int64_t(const std::string&, int64_t)> daily_used_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, TenantState> tenants_;
  size_t waiting_total_ = 0;
  bool shutdown_ = false;
};

// A duration as OpenAI's rate-limit headers write it: "12ms", "1.5s", "6m0s", "1h2m3s".
std::string duration_string(double seconds);

}  // namespace realm::server
