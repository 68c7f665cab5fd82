// `realm bench-serve --url URL --key KEY [--key KEY ...] --model NAME -c N [--tenants T]
// [--flood F] [--requests R] [--prompt-words A:B] [--max-tokens A:B] [--seed S] [--json]`: drives
// any OpenAI-compatible endpoint (realm serve, llama-server) with streaming /v1/completions
// requests and reports aggregate output tokens/s, time to first token and inter-token latency
// (p50/p99), and the service each tenant got: service = prompt tokens + 2 x output tokens (the
// Virtual Token Counter's cost), the largest difference between tenants and Jain's fairness index
// over it. Tenant k uses key k (keys are reused round-robin when there are fewer); every tenant
// keeps -c streams open (so all are backlogged), the first one F times as many with --flood F.
// Prompts and lengths are drawn from a seeded generator: the same flags send the same requests.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"

#if REALM_HAVE_SERVER
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#endif

namespace realm::cli {

#if REALM_HAVE_SERVER
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Url {
  std::string host, port = "80", base;  // base: the path prefix, e.g. "/v1"
};

bool parse_url(const std::string& s, Url& u) {
  const std::string scheme = "http://";
  if (s.rfind(scheme, 0) != 0) return false;
  const std::string rest = s.substr(scheme.size());
  const size_t slash = rest.find('/');
  const std::string hostport = rest.substr(0, slash);
  u.base = slash == std::string::npos ? "" : rest.substr(slash);
  while (!u.base.empty() && u.base.back() == '/') u.base.pop_back();
  const size_t colon = hostport.rfind(':');
  u.host = colon == std::string::npos ? hostport : hostport.substr(0, colon);
  if (colon != std::string::npos) u.port = hostport.substr(colon + 1);
  return !u.host.empty();
}

struct Result {
  int tenant = 0;
  bool ok = false;
  std::string error;
  int64_t prompt_tokens = 0, output_tokens = 0;
  double ttft_s = -1;
  std::vector<double> itl_s;
};

// One streamed completion; token counts from the usage chunk (include_usage), else the chunks.
Result run_one(const Url& url, const std::string& key, const nlohmann::json& body, int tenant) {
  Result r;
  r.tenant = tenant;
  try {
    net::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    stream.expires_after(std::chrono::seconds(600));
    stream.connect(resolver.resolve(url.host, url.port));
    http::request<http::string_body> req{http::verb::post, url.base + "/completions", 11};
    req.set(http::field::host, url.host);
    req.set(http::field::content_type, "application/json");
    if (!key.empty()) req.set(http::field::authorization, "Bearer " + key);
    req.body() = body.dump();
    req.prepare_payload();
    const auto t0 = Clock::now();
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    http::read_header(stream, buf, parser);
    const int status = static_cast<int>(parser.get().result_int());
    std::string pending, error_body;
    char chunk[16384];
    auto last = t0;
    int64_t chunks = 0;
    bool usage_seen = false, finished = false;
    std::string stream_error;
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      beast::error_code ec;
      // read_some: what has arrived (a whole read would wait for the buffer to fill, which
      // merges the events of a stream and hides their timing).
      http::read_some(stream, buf, parser, ec);
      if (ec && ec != http::error::need_buffer) throw beast::system_error(ec);
      const size_t n = sizeof chunk - parser.get().body().size;
      if (status != 200) {
        error_body.append(chunk, n);
        continue;
      }
      pending.append(chunk, n);
      for (size_t nl; (nl = pending.find("\n\n")) != std::string::npos;) {
        const std::string event = pending.substr(0, nl);
        pending.erase(0, nl + 2);
        if (event.rfind("data: ", 0) != 0) continue;
        const std::string data = event.substr(6);
        if (data == "[DONE]") {
          finished = true;
          continue;
        }
        const auto j = nlohmann::json::parse(data, nullptr, false);
        if (j.is_discarded()) continue;
        if (j.contains("error")) {  // an error event ends the stream as a failure
          stream_error = data.substr(0, 200);
          continue;
        }
        if (j.contains("usage") && j["usage"].is_object()) {
          r.prompt_tokens = j["usage"].value("prompt_tokens", int64_t{0});
          r.output_tokens = j["usage"].value("completion_tokens", int64_t{0});
          usage_seen = true;
        }
        if (!j.contains("choices") || j["choices"].empty()) continue;
        if (j["choices"][0].contains("finish_reason") &&
            j["choices"][0]["finish_reason"].is_string()) {
          finished = true;
        }
        const std::string text = j["choices"][0].value("text", std::string());
        if (text.empty()) continue;
        const auto now = Clock::now();
        if (r.ttft_s < 0) {
          r.ttft_s = std::chrono::duration<double>(now - t0).count();
        } else {
          r.itl_s.push_back(std::chrono::duration<double>(now - last).count());
        }
        last = now;
        ++chunks;
      }
    }
    if (status != 200) {
      r.error = "HTTP " + std::to_string(status) + ": " + error_body.substr(0, 200);
      return r;
    }
    if (!stream_error.empty()) {
      r.error = "error event: " + stream_error;
      return r;
    }
    if (!finished) {
      r.error = "the stream ended without a finish_reason or [DONE]";
      return r;
    }
    if (!usage_seen) r.output_tokens = chunks;
    r.ok = true;
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

const char* const kWords[] = {"the",  "a",     "little", "girl",  "dog",    "ran", "to",
                              "park", "happy", "sun",    "tree",  "big",    "red", "ball",
                              "she",  "he",    "played", "with",  "friend", "day", "one",
                              "time", "upon",  "once",   "there", "was",    "and", "saw"};

}  // namespace
#endif

void add_bench_serve_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string url, model, prompt_words = "8:64", max_tokens = "16:128";
    std::vector<std::string> keys;
    int concurrency = 4, tenants = 1, flood = 1, requests = 0;
    uint64_t seed = 1;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("bench-serve",
                                 "Load-test an OpenAI-compatible server with streaming requests");
  cmd->add_option("--url", a->url, "Base URL, e.g. http://127.0.0.1:8080/v1")->required();
  cmd->add_option("--key", a->keys, "API key (repeat: tenant k uses key k)");
  cmd->add_option("--model", a->model, "Model name")->required();
  cmd->add_option("-c,--concurrency", a->concurrency, "Open streams per tenant (default 4)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--tenants", a->tenants, "Tenants (default: the number of keys, at least 1)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--flood", a->flood, "The first tenant keeps F times as many streams")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--requests", a->requests,
                  "Requests per stream (default 4; the run ends when every stream is done)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--prompt-words", a->prompt_words, "Prompt length range in words (8:64)");
  cmd->add_option("--max-tokens", a->max_tokens, "max_tokens range (16:128)");
  cmd->add_option("--seed", a->seed, "Seed of the prompts and lengths (default 1)");
  cmd->add_flag("--json", a->json, "Print one JSON object");
  cmd->callback([a, cmd, &exit_code] {
#if REALM_HAVE_SERVER
    Url url;
    if (!parse_url(a->url, url)) {
      std::cerr << "realm: error: --url wants http://HOST[:PORT][/PATH], got '" << a->url << "'\n";
      exit_code = 2;
      return;
    }
    auto range = [](const std::string& s, int& lo, int& hi) {
      return std::sscanf(s.c_str(), "%d:%d", &lo, &hi) == 2 && lo >= 1 && hi >= lo;
    };
    int pw_lo = 0, pw_hi = 0, mt_lo = 0, mt_hi = 0;
    if (!range(a->prompt_words, pw_lo, pw_hi) || !range(a->max_tokens, mt_lo, mt_hi)) {
      std::cerr << "realm: error: --prompt-words and --max-tokens want LO:HI (1 <= LO <= HI)\n";
      exit_code = 2;
      return;
    }
    const int tenants =
        cmd->count("--tenants") ? a->tenants : std::max<int>(1, static_cast<int>(a->keys.size()));
    const int per_stream = a->requests > 0 ? a->requests : 4;
    std::vector<Result> results;
    std::mutex mu;
    std::vector<std::thread> streams;
    const auto t0 = Clock::now();
    int stream_no = 0;
    for (int t = 0; t < tenants; ++t) {
      const int n = a->concurrency * (t == 0 ? a->flood : 1);
      const std::string key =
          a->keys.empty() ? "" : a->keys[static_cast<size_t>(t) % a->keys.size()];
      for (int s = 0; s < n; ++s, ++stream_no) {
        streams.emplace_back(
            [&, t, key, seed = a->seed * 1000003u + static_cast<uint64_t>(stream_no)] {
              std::mt19937_64 rng(seed);
              for (int i = 0; i < per_stream; ++i) {
                const int words = std::uniform_int_distribution<int>(pw_lo, pw_hi)(rng);
                std::string prompt;
                for (int w = 0; w < words; ++w) {
                  prompt += (w ? " " : "");
                  prompt += kWords[rng() % (sizeof kWords / sizeof kWords[0])];
                }
                nlohmann::json body = {
                    {"model", a->model},
                    {"prompt", prompt},
                    {"max_tokens", std::uniform_int_distribution<int>(mt_lo, mt_hi)(rng)},
                    {"temperature", 0.8},
                    {"seed", static_cast<int64_t>(rng() >> 1)},
                    {"stream", true},
                    {"stream_options", {{"include_usage", true}}}};
                Result r = run_one(url, key, body, t);
                std::lock_guard<std::mutex> lock(mu);
                results.push_back(std::move(r));
              }
            });
      }
    }
    for (auto& s : streams) s.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();

    int64_t output = 0, errors = 0;
    std::vector<double> ttft, itl;
    std::vector<int64_t> t_out(static_cast<size_t>(tenants)), t_in(static_cast<size_t>(tenants));
    std::string first_error;
    for (const Result& r : results) {
      if (!r.ok) {
        ++errors;
        if (first_error.empty()) first_error = r.error;
        continue;
      }
      output += r.output_tokens;
      t_out[static_cast<size_t>(r.tenant)] += r.output_tokens;
      t_in[static_cast<size_t>(r.tenant)] += r.prompt_tokens;
      if (r.ttft_s >= 0) ttft.push_back(r.ttft_s * 1000);
      for (double d : r.itl_s) itl.push_back(d * 1000);
    }
    std::vector<double> service(static_cast<size_t>(tenants));
    double sum = 0, sum2 = 0;
    for (size_t t = 0; t < service.size(); ++t) {
      service[t] = static_cast<double>(t_in[t] + 2 * t_out[t]);
      sum += service[t];
      sum2 += service[t] * service[t];
    }
    const auto [mn, mx] = std::minmax_element(service.begin(), service.end());
    const double jain = sum2 > 0 ? sum * sum / (static_cast<double>(tenants) * sum2) : 1.0;
    nlohmann::ordered_json j;
    j["url"] = a->url;
    j["model"] = a->model;
    j["concurrency"] = a->concurrency;
    j["flood"] = a->flood;
    j["requests"] = results.size();
    j["errors"] = errors;
    j["output_tokens"] = output;
    j["wall_s"] = wall;
    j["output_tps"] = wall > 0 ? static_cast<double>(output) / wall : 0;
    j["ttft_ms"] = {{"p50", percentile(ttft, 0.5)}, {"p99", percentile(ttft, 0.99)}};
    j["itl_ms"] = {{"p50", percentile(itl, 0.5)}, {"p99", percentile(itl, 0.99)}};
    nlohmann::ordered_json per = nlohmann::ordered_json::array();
    for (size_t t = 0; t < service.size(); ++t) {
      per.push_back({{"tenant", t},
                     {"prompt_tokens", t_in[t]},
                     {"output_tokens", t_out[t]},
                     {"service", service[t]}});
    }
    j["tenants"] = per;
    j["service_diff"] = *mx - *mn;
    j["jain"] = jain;
    if (!first_error.empty()) j["first_error"] = first_error;
    if (a->json) {
      std::cout << j.dump(2) << "\n";
    } else {
      std::printf("%zu requests (%lld errors) in %.2f s: %.1f output tokens/s\n", results.size(),
                  static_cast<long long>(errors), wall, j["output_tps"].get<double>());
      std::printf("TTFT p50 %.1f ms p99 %.1f ms; ITL p50 %.1f ms p99 %.1f ms\n",
                  percentile(ttft, 0.5), percentile(ttft, 0.99), percentile(itl, 0.5),
                  percentile(itl, 0.99));
      for (size_t t = 0; t < service.size(); ++t) {
        std::printf("tenant %zu: %lld prompt + %lld output tokens, service %.0f\n", t,
                    static_cast<long long>(t_in[t]), static_cast<long long>(t_out[t]), service[t]);
      }
      std::printf("service difference %.0f, Jain index %.3f\n", *mx - *mn, jain);
      if (!first_error.empty()) std::printf("first error: %s\n", first_error.c_str());
    }
    exit_code = errors == static_cast<int64_t>(results.size()) ? 1 : 0;
#else
    std::cerr << "realm: error: this build has no server (Boost was missing when it was built)\n";
    exit_code = 1;
#endif
  });
}

}  // namespace realm::cli
