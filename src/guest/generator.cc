#include "guest/generator.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>

#include "guest/realm_guest.h"
#include "tokenizer/utf8_stream.h"

namespace realm::guest {

namespace {

// A failed import's status, with the host's reason when it gave one (realm.host_error).
std::string status_text(int32_t code) {
  std::string out = std::string(realm_status_name(code)) + " (" + std::to_string(code) + ")";
  std::string why;
  if (call_sized(why, [](char* buf, int32_t cap) { return realm_host_error(buf, cap); }) ==
          REALM_OK &&
      !why.empty()) {
    out += ": " + why;
  }
  return out;
}

// Reads an optional integer field into `out` (range-checked); false with `error` set on a
// wrong type or range.
bool get_int(const json::Value& doc, const char* key, int64_t lo, int64_t hi, int64_t& out,
             std::string& error) {
  const json::Value* v = doc.find(key);
  if (!v || v->is_null()) return true;
  int64_t x = 0;
  if (!v->as_int64(x)) {
    error = std::string("request field \"") + key + "\" must be an integer";
    return false;
  }
  if (x < lo || x > hi) {
    error = std::string("request field \"") + key + "\" must be in [" + std::to_string(lo) + ", " +
            std::to_string(hi) + "], got " + std::to_string(x);
    return false;
  }
  out = x;
  return true;
}

bool get_float(const json::Value& doc, const char* key, float& out, std::string& error) {
  const json::Value* v = doc.find(key);
  if (!v || v->is_null()) return true;
  if (!v->is_number()) {
    error = std::string("request field \"") + key + "\" must be a number";
    return false;
  }
  out = static_cast<float>(v->as_number());
  return true;
}

bool get_bool(const json::Value& doc, const char* key, bool& out, std::string& error) {
  const json::Value* v = doc.find(key);
  if (!v || v->is_null()) return true;
  if (!v->is_bool()) {
    error = std::string("request field \"") + key + "\" must be true or false";
    return false;
  }
  out = v->as_bool();
  return true;
}

// Closes a host session on every exit path.
class SessionGuard {
 public:
  explicit SessionGuard(int32_t s) : s_(s) {}
  ~SessionGuard() {
    if (s_ > 0) realm_session_close(s_);
  }
  SessionGuard(const SessionGuard&) = delete;
  SessionGuard& operator=(const SessionGuard&) = delete;

 private:
  int32_t s_;
};

}  // namespace

const char* finish_name(Finish f) {
  switch (f) {
    case Finish::EOS:
      return "eos";
    case Finish::LENGTH:
      return "length";
    case Finish::STOP:
      return "stop";
    case Finish::CANCELLED:
      return "cancelled";
  }
  return "?";
}

int32_t parse_request(const json::Value& doc, Request& r, std::string& error) {
  r = Request();
  r.sampling.seed = 42;
  if (!doc.is_object()) {
    error = "the request must be a JSON object";
    return REALM_E_INVALID;
  }
  if (const json::Value* v = doc.find("model"); v && !v->is_null()) {
    if (!v->is_string()) {
      error = "request field \"model\" must be a string";
      return REALM_E_INVALID;
    }
    r.model = v->text();
  }
  if (const json::Value* v = doc.find("prompt"); v && !v->is_null()) {
    if (!v->is_string()) {
      error = "request field \"prompt\" must be a string";
      return REALM_E_INVALID;
    }
    r.has_prompt = true;
    r.prompt = v->text();
  }
  if (const json::Value* v = doc.find("messages"); v && !v->is_null()) {
    if (!v->is_array()) {
      error = "request field \"messages\" must be an array";
      return REALM_E_INVALID;
    }
    for (size_t i = 0; i < v->items().size(); ++i) {
      const json::Value& m = v->items()[i];
      const json::Value* role = m.find("role");
      if (!m.is_object() || !role || !role->is_string()) {
        error = "messages[" + std::to_string(i) + "] must be an object with a string \"role\"";
        return REALM_E_INVALID;
      }
    }
    r.has_messages = true;
    json::append_value(r.messages_json, *v);
  }
  if (r.has_prompt == r.has_messages) {
    error = "the request needs exactly one of \"prompt\" and \"messages\"";
    return REALM_E_INVALID;
  }
  if (const json::Value* v = doc.find("logit_bias"); v && !v->is_null()) {
    if (!v->is_object() || v->members().size() > 1024) {
      error = "logit_bias must be an object of at most 1024 {\"token id\": bias} entries";
      return REALM_E_INVALID;
    }
    for (const auto& [key, bias] : v->members()) {
      char* end = nullptr;
      const long id = key.empty() ? -1 : std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id > std::numeric_limits<int32_t>::max() ||
          !bias.is_number() || !(bias.as_number() >= -100 && bias.as_number() <= 100)) {
        error =
            "logit_bias wants token ids (strings of digits) mapped to numbers in [-100, 100]; "
            "got \"" +
            key.substr(0, 32) + "\"";
        return REALM_E_INVALID;
      }
      r.logit_bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(bias.as_number()));
    }
  }
  int64_t x = r.max_tokens;
  if (!get_int(doc, "max_tokens", 0, std::numeric_limits<int32_t>::max(), x, error)) {
    return REALM_E_INVALID;
  }
  r.max_tokens = static_cast<int32_t>(x);
  auto& s = r.sampling;
  if (!get_float(doc, "temperature", s.temperature, error) ||
      !get_float(doc, "top_p", s.top_p, error) || !get_float(doc, "min_p", s.min_p, error) ||
      !get_float(doc, "repeat_penalty", s.repeat_penalty, error) ||
      !get_float(doc, "frequency_penalty", s.frequency_penalty, error) ||
      !get_float(doc, "presence_penalty", s.presence_penalty, error)) {
    return REALM_E_INVALID;
  }
  // The same ranges `realm run` accepts.
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {
    error = "top_p must be in (0, 1], got " + std::to_string(s.top_p);
    return REALM_E_INVALID;
  }
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) {
    error = "min_p must be in [0, 1], got " + std::to_string(s.min_p);
    return REALM_E_INVALID;
  }
  if (!(s.repeat_penalty > 0.0f)) {
    error = "repeat_penalty must be > 0, got " + std::to_string(s.repeat_penalty);
    return REALM_E_INVALID;
  }
  if (!std::isfinite(s.temperature) || !std::isfinite(s.frequency_penalty) ||
      !std::isfinite(s.presence_penalty)) {
    error = "sampling parameters must be finite";
    return REALM_E_INVALID;
  }
  x = s.top_k;
  if (!get_int(doc, "top_k", std::numeric_limits<int32_t>::min(),
               std::numeric_limits<int32_t>::max(), x, error)) {
    return REALM_E_INVALID;
  }
  s.top_k = static_cast<int32_t>(x);
  x = s.penalty_last_n;
  if (!get_int(doc, "repeat_last_n", -1, std::numeric_limits<int32_t>::max(), x, error)) {
    return REALM_E_INVALID;
  }
  s.penalty_last_n = static_cast<int32_t>(x);
  if (const json::Value* v = doc.find("seed"); v && !v->is_null()) {
    uint64_t seed = 0;
    int64_t neg = 0;
    if (v->as_uint64(seed)) {
      s.seed = seed;
    } else if (v->as_int64(neg) && neg < 0) {
      s.seed = std::random_device{}();  // negative: a random seed
    } else {
      error = "request field \"seed\" must be an integer";
      return REALM_E_INVALID;
    }
  }
  if (const json::Value* v = doc.find("stop"); v && !v->is_null()) {
    if (v->is_string()) {
      r.stop.push_back(v->text());
    } else if (v->is_array()) {
      for (const auto& item : v->items()) {
        if (!item.is_string()) {
          error = "request field \"stop\" must be a string or an array of strings";
          return REALM_E_INVALID;
        }
        r.stop.push_back(item.text());
      }
    } else {
      error = "request field \"stop\" must be a string or an array of strings";
      return REALM_E_INVALID;
    }
  }
  if (!get_bool(doc, "logprobs", r.logprobs, error) ||
      !get_bool(doc, "ignore_eos", r.ignore_eos, error)) {
    return REALM_E_INVALID;
  }
  x = 0;
  if (!get_int(doc, "top_logprobs", 0, 100, x, error)) return REALM_E_INVALID;
  r.top_logprobs = static_cast<int32_t>(x);
  x = 0;
  if (!get_int(doc, "n_ctx", 0, std::numeric_limits<int32_t>::max(), x, error)) {
    return REALM_E_INVALID;
  }
  r.n_ctx = x;
  return REALM_OK;
}

bool ModelInfo::is_eog(int32_t id) const {
  for (int32_t e : eog) {
    if (e == id) return true;
  }
  return false;
}

int32_t parse_model_info(std::string_view text, ModelInfo& out, std::string& error) {
  json::Value doc;
  if (!json::parse(text, doc, error)) {
    error = "model_info: " + error;
    return REALM_E_INTERNAL;
  }
  out = ModelInfo();
  auto get = [&](const char* key, int32_t& dst, bool required) {
    const json::Value* v = doc.find(key);
    int64_t x = 0;
    if (!v || v->is_null()) return !required;
    if (!v->as_int64(x) || x < std::numeric_limits<int32_t>::min() ||
        x > std::numeric_limits<int32_t>::max()) {
      return false;
    }
    dst = static_cast<int32_t>(x);
    return true;
  };
  if (!get("n_vocab", out.n_vocab, true) || out.n_vocab <= 0 ||
      !get("n_ctx_train", out.n_ctx_train, false) || !get("bos", out.bos, false) ||
      !get("eos", out.eos, false)) {
    error = "model_info: bad or missing n_vocab/n_ctx_train/bos/eos in " + std::string(text);
    return REALM_E_INTERNAL;
  }
  if (const json::Value* v = doc.find("eog"); v && v->is_array()) {
    for (const auto& item : v->items()) {
      int64_t x = 0;
      if (item.as_int64(x)) out.eog.push_back(static_cast<int32_t>(x));
    }
  } else if (out.eos >= 0) {
    out.eog.push_back(out.eos);
  }
  if (const json::Value* v = doc.find("add_bos"); v && v->is_bool()) out.add_bos = v->as_bool();
  return REALM_OK;
}

Generator::Generator() = default;
Generator::~Generator() = default;

int32_t Generator::fail(int32_t code, std::string message) {
  error_ = std::move(message);
  return code;
}

int32_t Generator::open_model(const std::string& name, const OpenModel*& out) {
  for (const auto& m : models_) {
    if (m.name == name) {
      out = &m;
      return REALM_OK;
    }
  }
  const int32_t h = realm_model_open(name.data(), static_cast<int32_t>(name.size()));
  if (h <= 0) {
    return fail(h < 0 ? h : REALM_E_INTERNAL,
                "model_open(\"" + name + "\") failed: " + status_text(h));
  }
  std::string info;
  int32_t rc =
      call_sized(info, [&](char* buf, int32_t cap) { return realm_model_info(h, buf, cap); });
  if (rc != REALM_OK) return fail(rc, "model_info failed: " + status_text(rc));
  OpenModel m{name, h, {}};
  std::string error;
  rc = parse_model_info(info, m.info, error);
  if (rc != REALM_OK) return fail(rc, error);
  models_.push_back(std::move(m));
  out = &models_.back();
  return REALM_OK;
}

int32_t Generator::build_prompt(const OpenModel& m, const Request& req, std::vector<int32_t>& ids) {
  std::string text;
  if (req.has_messages) {
    const int32_t rc = call_sized(text, [&](char* buf, int32_t cap) {
      return realm_chat_template(m.handle, req.messages_json.data(),
                                 static_cast<int32_t>(req.messages_json.size()), 1, buf, cap);
    });
    if (rc != REALM_OK) return fail(rc, "chat_template failed: " + status_text(rc));
  } else {
    text = req.prompt;
  }
  if (text.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return fail(REALM_E_LIMIT, "the prompt is too long");
  }
  // BOS per the model, special-token text parsed (as `realm run` and llama.cpp do).
  const int32_t flags = REALM_TOKENIZE_ADD_SPECIAL | REALM_TOKENIZE_PARSE_SPECIAL;
  const int32_t rc = call_sized(ids, [&](int32_t* out, int32_t cap) {
    return realm_tokenize(m.handle, text.data(), static_cast<int32_t>(text.size()), flags, out,
                          cap);
  });
  if (rc != REALM_OK) return fail(rc, "tokenize failed: " + status_text(rc));
  // A chat template that writes the BOS text itself would give two BOS tokens.
  if (req.has_messages && ids.size() >= 2 && m.info.bos >= 0 && ids[0] == m.info.bos &&
      ids[1] == m.info.bos) {
    ids.erase(ids.begin());
  }
  return REALM_OK;
}

int32_t Generator::emit(int32_t kind, const std::string& json, bool& client_gone) {
  const int32_t rc = realm_emit(kind, json.data(), static_cast<int32_t>(json.size()));
  if (rc < 0) return fail(rc, "emit failed: " + status_text(rc));
  if (rc == REALM_EMIT_CLIENT_GONE) client_gone = true;
  return REALM_OK;
}

int32_t Generator::generate(std::string_view request_json) {
  error_.clear();
  json::Value doc;
  std::string error;
  if (!json::parse(request_json, doc, error)) return fail(REALM_E_INVALID, "request: " + error);
  Request req;
  if (int32_t rc = parse_request(doc, req, error); rc != REALM_OK) return fail(rc, error);
  const OpenModel* m = nullptr;
  if (int32_t rc = open_model(req.model, m); rc != REALM_OK) return rc;
  std::vector<int32_t> prompt;
  if (int32_t rc = build_prompt(*m, req, prompt); rc != REALM_OK) return rc;
  return run(*m, req, doc, prompt);
}

int32_t Generator::run(const OpenModel& m, const Request& req, const json::Value& doc,
                       const std::vector<int32_t>& prompt) {
  if (prompt.empty()) return fail(REALM_E_INVALID, "the prompt has no tokens");
  const int64_t need = static_cast<int64_t>(prompt.size()) + req.max_tokens;
  const int64_t n_ctx = req.n_ctx > 0 ? req.n_ctx : need;
  if (need > n_ctx) {
    return fail(REALM_E_LIMIT, "prompt (" + std::to_string(prompt.size()) +
                                   " tokens) + requested tokens (" +
                                   std::to_string(req.max_tokens) + ") exceed the context size " +
                                   std::to_string(n_ctx));
  }
  if (n_ctx > std::numeric_limits<int32_t>::max()) {
    return fail(REALM_E_LIMIT, "context size " + std::to_string(n_ctx) + " is too large");
  }
  const int32_t session = realm_session_open(m.handle, static_cast<int32_t>(n_ctx));
  if (session <= 0) {
    const int32_t rc = session < 0 ? session : REALM_E_INTERNAL;
    return fail(rc, "session_open(n_ctx " + std::to_string(n_ctx) + ") failed: " + status_text(rc));
  }
  SessionGuard guard(session);

  sampling::SamplerChain chain(req.sampling);
  if (int32_t rc = configure(doc, req, chain); rc != REALM_OK) {
    if (error_.empty()) error_ = "configure failed: " + status_text(rc);
    return rc;
  }
  sampling::StopMatcher stops(req.stop);
  // Pieces from the host are raw bytes; only complete UTF-8 leaves (the host's StreamDecoder
  // logic, with the first piece's leading space kept, as engine::generate does).
  tok::Utf8Stream decoder;
  std::vector<int32_t> history = prompt;
  history.reserve(prompt.size() + static_cast<size_t>(std::min(req.max_tokens, 4096)));
  logits_.resize(static_cast<size_t>(m.info.n_vocab));
  for (const auto& [id, bias] : req.logit_bias) {
    if (id >= m.info.n_vocab) {
      return fail(REALM_E_INVALID, "logit_bias: token id " + std::to_string(id) +
                                       " is out of the vocabulary (n_vocab " +
                                       std::to_string(m.info.n_vocab) + ")");
    }
  }
  const int32_t n_logprobs = req.top_logprobs;

  auto decode = [&](const int32_t* ids, size_t n) -> int32_t {
    const int32_t rc = realm_decode(session, ids, static_cast<int32_t>(n), logits_.data(),
                                    static_cast<int32_t>(logits_.size()));
    if (rc < 0) return fail(rc, "decode failed: " + status_text(rc));
    if (rc != m.info.n_vocab) {
      return fail(REALM_E_INTERNAL, "decode returned " + std::to_string(rc) +
                                        " logits, model_info says n_vocab " +
                                        std::to_string(m.info.n_vocab));
    }
    for (const auto& [id, bias] : req.logit_bias) logits_[static_cast<size_t>(id)] += bias;
    return REALM_OK;
  };

  if (int32_t rc = decode(prompt.data(), prompt.size()); rc != REALM_OK) return rc;

  Finish finish = Finish::LENGTH;
  std::string text_so_far;
  int32_t n_generated = 0;
  bool client_gone = false;
  for (int32_t i = 0; i < req.max_tokens; ++i) {
    if (i > 0) {
      if (int32_t rc = decode(&history.back(), 1); rc != REALM_OK) return rc;
    }
    const int32_t id = chain.sample(logits_, {history});
    if (id < 0) return fail(REALM_E_INTERNAL, "sampling produced no token");
    const bool eog = m.info.is_eog(id) && !req.ignore_eos;
    ++n_generated;
    history.push_back(id);
    std::string text;
    if (eog) {
      finish = Finish::EOS;
      text = stops.flush();
      text += decoder.flush();
    } else {
      const int32_t rc = call_sized(piece_, [&](char* buf, int32_t cap) {
        return realm_token_piece(m.handle, id, buf, cap);
      });
      if (rc != REALM_OK) return fail(rc, "token_piece failed: " + status_text(rc));
      text = stops.feed(decoder.push(piece_));
      if (stops.stopped()) finish = Finish::STOP;
    }
    text_so_far += text;
    bool custom_stop = false;
    if (!eog && !stops.stopped() && should_stop(text_so_far, id)) {
      finish = Finish::STOP;
      custom_stop = true;
    }

    event_.clear();
    event_ += "{\"text\":";
    json::append_string(event_, text);
    event_ += ",\"id\":";
    json::append_int(event_, id);
    double lse = 0;
    if (req.logprobs || n_logprobs > 0) {
      lse = sampling::log_sum_exp(logits_);
      event_ += ",\"logprob\":";
      json::append_number(event_, sampling::token_logprob(logits_, id, lse));
    }
    if (n_logprobs > 0) {
      event_ += ",\"top_logprobs\":[";
      const auto top = sampling::top_logprobs(logits_, static_cast<size_t>(n_logprobs), lse);
      for (size_t k = 0; k < top.size(); ++k) {
        if (k) event_.push_back(',');
        event_ += "{\"id\":";
        json::append_int(event_, top[k].id);
        event_ += ",\"logprob\":";
        json::append_number(event_, top[k].logprob);
        event_.push_back('}');
      }
      event_.push_back(']');
    }
    event_.push_back('}');
    if (int32_t rc = emit(REALM_EMIT_TOKEN, event_, client_gone); rc != REALM_OK) return rc;
    if (client_gone) {
      finish = Finish::CANCELLED;
      break;
    }
    if (eog || stops.stopped() || custom_stop) break;
  }
  if (finish == Finish::LENGTH) {
    std::string tail = stops.feed(decoder.flush());
    if (!stops.stopped()) tail += stops.flush();
    if (stops.stopped()) finish = Finish::STOP;
    if (!tail.empty()) {
      event_.clear();
      event_ += "{\"text\":";
      json::append_string(event_, tail);
      event_ += ",\"id\":-1}";
      if (int32_t rc = emit(REALM_EMIT_TOKEN, event_, client_gone); rc != REALM_OK) return rc;
    }
  }
  event_.clear();
  event_ += "{\"finish_reason\":";
  json::append_string(event_, finish_name(finish));
  event_ += ",\"prompt_tokens\":";
  json::append_int(event_, static_cast<int64_t>(prompt.size()));
  event_ += ",\"completion_tokens\":";
  json::append_int(event_, n_generated);
  event_.push_back('}');
  if (client_gone) {
    // The client is gone: the final result is for the host's accounting; its answer is moot.
    realm_emit(REALM_EMIT_FINAL, event_.data(), static_cast<int32_t>(event_.size()));
    return REALM_OK;
  }
  if (int32_t rc = emit(REALM_EMIT_FINAL, event_, client_gone); rc != REALM_OK) return rc;
  return REALM_OK;
}

}  // namespace realm::guest
