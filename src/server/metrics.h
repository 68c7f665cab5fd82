// Prometheus metrics of `realm serve` (GET /metrics), named after vLLM's with a `realm:` prefix:
// requests by status, prompt and generation tokens, histograms of time to first token, inter-token
// latency, queue time and end-to-end latency, per model and tenant; refusals by reason; sandbox
// faults by cause. Gauges are read by the caller at render time. Tenant label values are capped
// (`max_tenants` distinct ones; later tenants count as "other") to bound the cardinality.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace realm::server {

class Metrics {
 public:
  explicit Metrics(size_t max_tenants = 100) : max_tenants_(max_tenants) {}

  // One finished generation request.
  struct Request {
    std::string model, tenant;
    int status = 200;
    int64_t prompt_tokens = 0, generation_tokens = 0;
    double ttft_s = -1;         // < 0: no token was produced
    std::vector<double> itl_s;  // the gaps between token events
    double queue_s = -1;        // < 0: never queued (refused before)
    double e2e_s = 0;
  };
  void record(const Request& r);
  // A refusal by the rate limits or quotas (429: `rate_limited`) or the queues (503).
  void rate_limited(const std::string& tenant, const std::string& reason);
  void admission_rejected(const std::string& reason);
  // A request ended by its guest's fault (trap, time limit, memory limit, ...).
  void sandbox_fault(const std::string& cause);

  // A value read at render time: a gauge, or a counter kept elsewhere (the engines').
  struct Gauge {
    std::string name, help, labels;  // labels: `model="m"` or ""
    double value = 0;
    bool counter = false;
  };
  // The text exposition format (HELP and TYPE lines), sampled values first.
  std::string render(const std::vector<Gauge>& gauges) const;

 private:
  struct Histogram {
    std::vector<uint64_t> counts;  // per bucket of the family's bounds (+Inf last)
    double sum = 0;
    uint64_t count = 0;
    void add(const std::vector<double>& bounds, double v);
  };
  struct Series {
    std::map<int, uint64_t> requests;  // by status
    uint64_t prompt_tokens = 0, generation_tokens = 0;
    Histogram ttft, itl, queue, e2e;
  };
  std::string tenant_label(const std::string& tenant);  // under mu_

  size_t max_tenants_;
  mutable std::mutex mu_;
  std::set<std::string> tenants_;
  std::map<std::pair<std::string, std::string>, Series> series_;          // by (model, tenant)
  std::map<std::pair<std::string, std::string>, uint64_t> rate_limited_;  // (tenant, reason)
  std::map<std::string, uint64_t> rejections_, faults_;
};

// A label value with \, " and newlines escaped, as the format wants.
std::string prometheus_label(const std::string& v);

}  // namespace realm::server
