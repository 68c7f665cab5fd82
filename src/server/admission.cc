#include "server/admission.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>

namespace realm::server {

const char* refusal_name(Refusal r) {
  switch (r) {
    case Refusal::NONE:
      return "none";
    case Refusal::RATE_REQUESTS:
      return "requests";
    case Refusal::RATE_TOKENS:
      return "tokens";
    case Refusal::TOO_LARGE:
      return "too_large";
    case Refusal::DAILY_QUOTA:
      return "daily_quota";
    case Refusal::QUEUE_FULL:
      return "queue_full";
    case Refusal::QUEUE_TIMEOUT:
      return "queue_timeout";
    case Refusal::ABANDONED:
      return "abandoned";
    case Refusal::SHUTDOWN:
      return "shutdown";
  }
  return "?";
}

std::string duration_string(double seconds) {
  if (!(seconds > 0)) return "0s";
  char buf[64];
  if (seconds < 1) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(std::ceil(seconds * 1000)));
    return buf;
  }
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%gs", std::ceil(seconds * 1000) / 1000);
    return buf;
  }
  const long long s = static_cast<long long>(std::ceil(seconds));
  if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%llds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%lldm%llds", s / 3600, s / 60 % 60, s % 60);
  }
  return buf;
}

void Admission::Bucket::refill(double cap, double now) {
  if (!init || capacity != cap) {  // new, or the limit changed: start full
    if (!init) tokens = cap;
    tokens = std::min(tokens, cap);
    capacity = cap;
    init = true;
    last = now;
    return;
  }
  tokens = std::min(cap, tokens + (now - last) * cap / 60.0);
  last = now;
}

Admission::Admission(QueueLimits limits,
                     std::function<int64_t(const std::string&, int64_t)> daily_used)
    : limits_(limits), daily_used_(std::move(daily_used)) {
  now_s = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  unix_s = [] {
    return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
  };
}

Admission::~Admission() {
  shutdown();
}

Admission::Ticket::~Ticket() {
  if (!done_) a_->release(tenant_, reserved_, 0);
}

void Admission::Ticket::finish(int64_t tokens) {
  if (done_) return;
  done_ = true;
  a_->release(tenant_, reserved_, std::max<int64_t>(tokens, 0));
}

void Admission::release(const std::string& tenant, int64_t reserved, int64_t used) {
  std::lock_guard<std::mutex> lock(mu_);
  TenantState& t = tenants_[tenant];
  --t.running;
  t.day_reserved -= reserved;
  t.day_used += used;
  if (t.tpm > 0 && t.tokens.init) {
    // As if only `used` had been taken (more than reserved leaves the bucket in debt).
    t.tokens.tokens = std::min(t.tokens.capacity, t.tokens.tokens + double(reserved - used));
  }
  cv_.notify_all();
}

Admission::Result Admission::admit(const std::string& tenant, const TenantQuota& quota,
                                   int64_t prompt_tokens, int64_t max_tokens, bool explicit_max,
                                   const std::function<bool()>& abandoned) {
  Result r;
  auto refuse = [&](Refusal why, std::string message, double retry_s) {
    r.refusal = why;
    r.message = std::move(message);
    r.retry_after_s = retry_s;
    return std::move(r);
  };
  // The day's use, read once per tenant per UTC day (outside the lock: it reads the database).
  const int64_t now_unix = unix_s();
  const int64_t today = now_unix / 86400;
  bool need_day = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    need_day = quota.daily_tokens > 0 && tenants_[tenant].day != today;
  }
  int64_t used_today = 0;
  if (need_day && daily_used_) used_today = daily_used_(tenant, today * 86400);

  std::unique_lock<std::mutex> lock(mu_);
  if (shutdown_) return refuse(Refusal::SHUTDOWN, "the server is shutting down", 1);
  TenantState& t = tenants_[tenant];
  if (need_day && t.day != today) {
    t.day = today;
    t.day_used = used_today;
  }
  const double now = now_s();
  const int32_t concurrency = std::max<int32_t>(quota.concurrency, 1);
  const bool would_wait = t.running >= concurrency || t.waiting > 0;
  if (would_wait && t.waiting >= limits_.max_waiting_per_tenant) {
    return refuse(Refusal::QUEUE_FULL,
                  "too many requests of this tenant are waiting (" + std::to_string(t.waiting) +
                      "); try again shortly",
                  1);
  }
  if (would_wait && waiting_total_ >= limits_.max_waiting_total) {
    return refuse(Refusal::QUEUE_FULL, "the server's queue is full; try again shortly", 1);
  }
  if (quota.rpm > 0) {
    t.requests.refill(double(quota.rpm), now);
    if (t.requests.tokens < 1) {
      return refuse(Refusal::RATE_REQUESTS,
                    "rate limit reached: " + std::to_string(quota.rpm) + " requests per minute",
                    (1 - t.requests.tokens) * 60.0 / double(quota.rpm));
    }
  }
  if (quota.daily_tokens > 0) {
    const int64_t left = quota.daily_tokens - t.day_used - t.day_reserved;
    if (left <= prompt_tokens) {
      return refuse(Refusal::DAILY_QUOTA,
                    "the tenant's daily quota of " + std::to_string(quota.daily_tokens) +
                        " tokens is spent (" + std::to_string(std::max<int64_t>(left, 0)) +
                        " left, the prompt needs " + std::to_string(prompt_tokens) + ")",
                    0);
    }
    max_tokens = std::min(max_tokens, left - prompt_tokens);
  }
  if (quota.tpm > 0) {
    if (prompt_tokens + max_tokens > quota.tpm) {
      if (explicit_max || prompt_tokens >= quota.tpm) {
        return refuse(Refusal::TOO_LARGE,
                      "the request needs " + std::to_string(prompt_tokens + max_tokens) +
                          " tokens (prompt + max tokens), more than the tenant's limit of " +
                          std::to_string(quota.tpm) + " tokens per minute",
                      0);
      }
      max_tokens = quota.tpm - prompt_tokens;
    }
    const double need = double(prompt_tokens + max_tokens);
    t.tokens.refill(double(quota.tpm), now);
    if (t.tokens.tokens < need) {
      return refuse(Refusal::RATE_TOKENS,
                    "rate limit reached: " + std::to_string(quota.tpm) +
                        " tokens per minute (this request reserves " +
                        std::to_string(prompt_tokens + max_tokens) + ")",
                    (need - t.tokens.tokens) * 60.0 / double(quota.tpm));
    }
  }
  // Admitted by the limits: take the reservations, then wait for a slot.
  const int64_t reserved = prompt_tokens + max_tokens;
  t.tpm = quota.tpm;
  if (quota.rpm > 0) t.requests.tokens -= 1;
  if (quota.tpm > 0) t.tokens.tokens -= double(reserved);
  t.day_reserved += reserved;
  auto add_headers = [&](const char* what, int64_t limit, const Bucket& b) {
    r.headers.emplace_back(std::string("x-ratelimit-limit-") + what, std::to_string(limit));
    r.headers.emplace_back(std::string("x-ratelimit-remaining-") + what,
                           std::to_string(std::max<int64_t>(0, int64_t(std::floor(b.tokens)))));
    r.headers.emplace_back(std::string("x-ratelimit-reset-") + what,
                           duration_string((b.capacity - b.tokens) * 60.0 / double(limit)));
  };
  if (quota.rpm > 0) add_headers("requests", quota.rpm, t.requests);
  if (quota.tpm > 0) add_headers("tokens", quota.tpm, t.tokens);
  auto refund = [&](TenantState& ts) {
    if (quota.rpm > 0) ts.requests.tokens = std::min(ts.requests.capacity, ts.requests.tokens + 1);
    if (quota.tpm > 0) {
      ts.tokens.tokens = std::min(ts.tokens.capacity, ts.tokens.tokens + double(reserved));
    }
    ts.day_reserved -= reserved;
  };

  const uint64_t number = t.next_ticket++;
  ++t.waiting;
  ++waiting_total_;
  t.order.push_back(number);
  const double start = now;
  Refusal why = Refusal::NONE;
  for (;;) {
    const TenantState& ts = t;
    const auto& q = t.order;
    if (shutdown_) {
      why = Refusal::SHUTDOWN;
      break;
    }
    if (!q.empty() && q.front() == number && ts.running < concurrency) break;
    if (now_s() - start >= std::chrono::duration<double>(limits_.max_wait).count()) {
      why = Refusal::QUEUE_TIMEOUT;
      break;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(50));
    if (abandoned) {
      lock.unlock();
      const bool gone = abandoned();
      lock.lock();
      if (gone) {
        why = Refusal::ABANDONED;
        break;
      }
    }
  }
  TenantState& ts = t;
  auto& q = t.order;
  q.erase(std::find(q.begin(), q.end(), number));
  --ts.waiting;
  --waiting_total_;
  r.queue_s = now_s() - start;
  if (why != Refusal::NONE) {
    refund(ts);
    cv_.notify_all();
    r.headers.clear();
    return refuse(why,
                  why == Refusal::QUEUE_TIMEOUT
                      ? "waited " + std::to_string(limits_.max_wait.count()) +
                            " ms for one of the tenant's " + std::to_string(concurrency) +
                            " concurrent slots; try again shortly"
                  : why == Refusal::SHUTDOWN ? "the server is shutting down"
                                             : "the client went away",
                  1);
  }
  ++ts.running;
  cv_.notify_all();  // the next in this tenant's queue may now be first
  r.max_tokens = max_tokens;
  r.ticket.reset(new Ticket(this, tenant, reserved));
  return std::move(r);
}

void Admission::shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  cv_.notify_all();
}

size_t Admission::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_total_;
}

size_t Admission::waiting(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.waiting;
}

int Admission::running(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.running;
}

}  // namespace realm::server
