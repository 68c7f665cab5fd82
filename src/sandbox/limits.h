// Tenants and their limits. Every per-tenant limit the sandbox enforces is read through one
// interface, Limits (CONVENTIONS.md §11): the sandbox asks it for the memory cap, the time limit
// per call, the token budget per request, the output cap and the host time spent for the guest,
// and takes/returns session slots
// through it. Tests plug in their own implementation.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "util/expected.h"

namespace realm::sandbox {

struct TenantLimits {
  uint64_t memory_bytes = uint64_t{64} << 20;      // guest linear memory cap
  std::chrono::milliseconds call_time{10000};      // guest-code time per export call
  int64_t token_budget = 16384;                    // tokens through decode per request
  int32_t max_sessions = 4;                        // concurrent sessions (KV caches)
  uint64_t max_output_bytes = uint64_t{16} << 20;  // emitted bytes per request
  uint64_t max_event_bytes = uint64_t{1} << 20;    // one emitted event
  uint64_t max_log_bytes = uint64_t{64} << 10;     // log + stdout/stderr per request
  int64_t max_session_ctx = 8192;                  // largest n_ctx of one session
  // Host CPU time spent on the guest's behalf per request (tokenizing, rendering chat templates,
  // checking events; not decode, which the token budget bounds).
  std::chrono::milliseconds host_time{10000};
};

struct TenantRecord {
  std::string id;
  std::vector<std::string> allowed_models;  // model names it may open ("*": every model)
  TenantLimits limits;
  double weight = 1.0;  // its share of the engines' service (the fair scheduler's weight, > 0)
  bool may_use(std::string_view model) const;
};

class Limits {
 public:
  virtual ~Limits() = default;
  virtual uint64_t memory_bytes(const TenantRecord& t) const = 0;
  virtual std::chrono::nanoseconds call_time(const TenantRecord& t) const = 0;
  virtual int64_t token_budget(const TenantRecord& t) const = 0;
  virtual uint64_t max_output_bytes(const TenantRecord& t) const = 0;
  virtual uint64_t max_event_bytes(const TenantRecord& t) const = 0;
  virtual uint64_t max_log_bytes(const TenantRecord& t) const = 0;
  virtual int64_t max_session_ctx(const TenantRecord& t) const = 0;
  virtual std::chrono::nanoseconds host_time(const TenantRecord& t) const = 0;
  // Takes one concurrent-session slot; an error (naming the limit) when the tenant has none left.
  virtual Status acquire_session(const TenantRecord& t) = 0;
  virtual void release_session(const TenantRecord& t) = 0;
};

// The limits written in each tenant's record; sessions counted per tenant id.
class RecordLimits : public Limits {
 public:
  uint64_t memory_bytes(const TenantRecord& t) const override { return t.limits.memory_bytes; }
  std::chrono::nanoseconds call_time(const TenantRecord& t) const override {
    return t.limits.call_time;
  }
  int64_t token_budget(const TenantRecord& t) const override { return t.limits.token_budget; }
  uint64_t max_output_bytes(const TenantRecord& t) const override {
    return t.limits.max_output_bytes;
  }
  uint64_t max_event_bytes(const TenantRecord& t) const override {
    return t.limits.max_event_bytes;
  }
  uint64_t max_log_bytes(const TenantRecord& t) const override { return t.limits.max_log_bytes; }
  int64_t max_session_ctx(const TenantRecord& t) const override { return t.limits.max_session_ctx; }
  std::chrono::nanoseconds host_time(const TenantRecord& t) const override {
    return t.limits.host_time;
  }
  Status acquire_session(const TenantRecord& t) override;
  void release_session(const TenantRecord& t) override;
  int32_t open_sessions(const std::string& tenant) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, int32_t> sessions_;
};

}  // namespace realm::sandbox
