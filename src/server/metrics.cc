#include "server/metrics.h"

#include <cstdio>

namespace realm::server {

namespace {

// vLLM's buckets.
const std::vector<double> kTtftBounds = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                         0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                         20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kItlBounds = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                        0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> kE2eBounds = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                        5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                        60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

const std::vector<double> kQueueBounds = {0.001, 0.005, 0.01, 0.05, 0.1,  0.25, 0.5,  1.0,
                                          2.5,   5.0,   10.0, 20.0, 40.0, 80.0, 160.0};

}  // namespace

std::string prometheus_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string Metrics::tenant_label(const std::string& tenant) {
  if (tenants_.count(tenant)) return tenant;
  if (tenants_.size() >= max_tenants_) return "other";
  tenants_.insert(tenant);
  return tenant;
}

void Metrics::rate_limited(const std::string& tenant, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++rate_limited_[{tenant_label(tenant), reason}];
}

void Metrics::admission_rejected(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++rejections_[reason];
}

void Metrics::sandbox_fault(const std::string& cause) {
  std::lock_guard<std::mutex> lock(mu_);
  ++faults_[cause];
}

void Metrics::Histogram::add(const std::vector<double>& bounds, double v) {
  if (counts.empty()) counts.assign(bounds.size() + 1, 0);
  size_t i = 0;
  while (i < bounds.size() && v > bounds[i]) ++i;
  ++counts[i];
  sum += v;
  ++count;
}

void Metrics::record(const Request& r) {
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = series_[{r.model, tenant_label(r.tenant)}];
  ++s.requests[r.status];
  s.prompt_tokens += static_cast<uint64_t>(r.prompt_tokens);
  s.generation_tokens += static_cast<uint64_t>(r.generation_tokens);
  if (r.ttft_s >= 0) s.ttft.add(kTtftBounds, r.ttft_s);
  for (double d : r.itl_s) s.itl.add(kItlBounds, d);
  if (r.queue_s >= 0) s.queue.add(kQueueBounds, r.queue_s);
  s.e2e.add(kE2eBounds, r.e2e_s);
}

std::string Metrics::render(const std::vector<Gauge>& gauges) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto head = [&](const std::string& name, const char* type, const std::string& help) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  std::string last;
  for (const Gauge& g : gauges) {
    if (g.name != last) head(g.name, g.counter ? "counter" : "gauge", g.help);
    last = g.name;
    out += g.name + (g.labels.empty() ? "" : "{" + g.labels + "}") + " " + num(g.value) + "\n";
  }
  auto key = [](const std::pair<std::string, std::string>& mt) {
    return "model=\"" + prometheus_label(mt.first) + "\",tenant=\"" + prometheus_label(mt.second) +
           "\"";
  };
  head("realm:requests_total", "counter", "Finished generation requests by HTTP status.");
  for (const auto& [mt, s] : series_) {
    for (const auto& [status, n] : s.requests) {
      out += "realm:requests_total{" + key(mt) + ",status=\"" + std::to_string(status) + "\"} " +
             std::to_string(n) + "\n";
    }
  }
  head("realm:prompt_tokens_total", "counter", "Prompt tokens processed.");
  for (const auto& [mt, s] : series_) {
    out += "realm:prompt_tokens_total{" + key(mt) + "} " + std::to_string(s.prompt_tokens) + "\n";
  }
  head("realm:generation_tokens_total", "counter", "Tokens generated.");
  for (const auto& [mt, s] : series_) {
    out += "realm:generation_tokens_total{" + key(mt) + "} " + std::to_string(s.generation_tokens) +
           "\n";
  }
  head("realm:rate_limited_total", "counter",
       "Requests refused by a tenant's rate limits or quota (429), by reason.");
  for (const auto& [tr, n] : rate_limited_) {
    out += "realm:rate_limited_total{tenant=\"" + prometheus_label(tr.first) + "\",reason=\"" +
           prometheus_label(tr.second) + "\"} " + std::to_string(n) + "\n";
  }
  head("realm:admission_rejections_total", "counter",
       "Requests refused by the queues (503), by reason.");
  for (const auto& [reason, n] : rejections_) {
    out += "realm:admission_rejections_total{reason=\"" + prometheus_label(reason) + "\"} " +
           std::to_string(n) + "\n";
  }
  head("realm:sandbox_faults_total", "counter", "Requests ended by their guest's fault, by cause.");
  for (const auto& [cause, n] : faults_) {
    out += "realm:sandbox_faults_total{cause=\"" + prometheus_label(cause) + "\"} " +
           std::to_string(n) + "\n";
  }
  auto histogram = [&](const char* name, const char* help, const std::vector<double>& bounds,
                       Histogram Series::*member) {
    head(name, "histogram", help);
    for (const auto& [mt, s] : series_) {
      const Histogram& h = s.*member;
      const std::string m = key(mt);
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += h.counts.empty() ? 0 : h.counts[i];
        out += std::string(name) + "_bucket{" + m + ",le=\"" +
               (i < bounds.size() ? num(bounds[i]) : std::string("+Inf")) + "\"} " +
               std::to_string(cumulative) + "\n";
      }
      out += std::string(name) + "_sum{" + m + "} " + num(h.sum) + "\n";
      out += std::string(name) + "_count{" + m + "} " + std::to_string(h.count) + "\n";
    }
  };
  histogram("realm:time_to_first_token_seconds", "Time from the request to its first token.",
            kTtftBounds, &Series::ttft);
  histogram("realm:inter_token_latency_seconds", "Time between a request's tokens.", kItlBounds,
            &Series::itl);
  histogram("realm:request_queue_time_seconds",
            "Time a request waited for one of its tenant's concurrency slots.", kQueueBounds,
            &Series::queue);
  histogram("realm:e2e_request_latency_seconds", "Time from the request to its end.", kE2eBounds,
            &Series::e2e);
  return out;
}

}  // namespace realm::server
