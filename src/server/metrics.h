// Prometheus metrics of `realm serve` (GET /metrics), named after vLLM's with a `realm:` prefix:
// request counts by status, prompt and generation tokens, and histograms of time to first token,
// inter-token latency and end-to-end latency, per model; gauges are added by the caller.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace realm::server {

class Metrics {
 public:
  // One finished generation request.
  struct Request {
    std::string model;
    int status = 200;
    int64_t prompt_tokens = 0, generation_tokens = 0;
    double ttft_s = -1;         // < 0: no token was produced
    std::vector<double> itl_s;  // the gaps between token events
    double e2e_s = 0;
  };
  void record(const Request& r);
  // The text exposition format (HELP and TYPE lines), with `gauges` (name -> value) first.
  std::string render(const std::vector<std::pair<std::string, double>>& gauges) const;

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
    Histogram ttft, itl, e2e;
  };
  mutable std::mutex mu_;
  std::map<std::string, Series> by_model_;
};

}  // namespace realm::server
