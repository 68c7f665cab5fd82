// Responses kept for `previous_response_id` (the Responses API): each stored response holds the
// whole conversation up to it (the chat messages, its own reply last), in memory, per tenant: a
// tenant never sees another's responses. At most `per_tenant` responses per tenant (the oldest go
// first) and each expires `ttl` after it was stored.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace realm::server {

class Conversations {
 public:
  Conversations(size_t per_tenant, std::chrono::seconds ttl) : per_tenant_(per_tenant), ttl_(ttl) {}

  void put(const std::string& tenant, const std::string& response_id, nlohmann::json messages) {
    std::lock_guard<std::mutex> lock(mu_);
    PerTenant& t = tenants_[tenant];
    const auto now = std::chrono::steady_clock::now();
    expire(t, now);
    if (per_tenant_ == 0) return;
    while (t.order.size() >= per_tenant_) {
      t.entries.erase(t.order.front());
      t.order.pop_front();
    }
    t.entries[response_id] = {std::move(messages), now + ttl_};
    t.order.push_back(response_id);
  }

  // The conversation ending with the response `response_id` of `tenant`.
  std::optional<nlohmann::json> get(const std::string& tenant, const std::string& response_id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto t = tenants_.find(tenant);
    if (t == tenants_.end()) return std::nullopt;
    expire(t->second, std::chrono::steady_clock::now());
    auto e = t->second.entries.find(response_id);
    if (e == t->second.entries.end()) return std::nullopt;
    return e->second.messages;
  }

 private:
  struct Entry {
    nlohmann::json messages;
    std::chrono::steady_clock::time_point expires;
  };
  struct PerTenant {
    std::map<std::string, Entry> entries;
    std::deque<std::string> order;  // oldest first
  };
  void expire(PerTenant& t, std::chrono::steady_clock::time_point now) {
    while (!t.order.empty()) {
      auto e = t.entries.find(t.order.front());
      if (e != t.entries.end() && e->second.expires > now) break;
      if (e != t.entries.end()) t.entries.erase(e);
      t.order.pop_front();
    }
  }
  size_t per_tenant_;
  std::chrono::seconds ttl_;
  std::mutex mu_;
  std::map<std::string, PerTenant> tenants_;
};

}  // namespace realm::server
