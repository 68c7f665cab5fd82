// realm_sentence.wasm: an example custom guest built on the SDK's Generator. Two tenant-specific
// rules on top of the default loop:
//   - its own stop rule: "max_sentences": N (default 1) ends the request with finish_reason
//     "stop" once the released text holds N sentence ends ('.', '!' or '?' followed by a space, a
//     newline or the end of the text so far);
//   - its own sampler: "ban_ids": [ids] removes those tokens before the draw (also at
//     temperature 0).
#include <algorithm>
#include <new>
#include <string>
#include <vector>

#include "guest/guest_exports.h"
#include "guest/realm_guest.h"

namespace realm::guest {
namespace {

class BanSampler : public sampling::Sampler {
 public:
  explicit BanSampler(std::vector<int32_t> ids) : ids_(std::move(ids)) {
    std::sort(ids_.begin(), ids_.end());
  }
  const char* name() const override { return "ban"; }
  void apply(sampling::Candidates& c, const sampling::History&) override {
    auto& d = c.data();
    d.erase(std::remove_if(d.begin(), d.end(),
                           [&](const sampling::TokenData& t) {
                             return std::binary_search(ids_.begin(), ids_.end(), t.id);
                           }),
            d.end());
  }

 private:
  std::vector<int32_t> ids_;
};

class SentenceGenerator : public Generator {
 protected:
  int32_t configure(const json::Value& request, const Request&,
                    sampling::SamplerChain& chain) override {
    max_sentences_ = 1;
    if (const json::Value* v = request.find("max_sentences"); v && !v->is_null()) {
      int64_t n = 0;
      if (!v->as_int64(n) || n < 1 || n > 1000000) {
        return fail(REALM_E_INVALID, "max_sentences must be an integer in [1, 1000000]");
      }
      max_sentences_ = n;
    }
    if (const json::Value* v = request.find("ban_ids"); v && !v->is_null()) {
      if (!v->is_array()) return fail(REALM_E_INVALID, "ban_ids must be an array of token ids");
      std::vector<int32_t> ids;
      for (const auto& item : v->items()) {
        int64_t id = 0;
        if (!item.as_int64(id) || id < 0 || id > 0x7FFFFFFF) {
          return fail(REALM_E_INVALID, "ban_ids must be an array of token ids");
        }
        ids.push_back(static_cast<int32_t>(id));
      }
      if (!ids.empty()) chain.add(std::make_unique<BanSampler>(std::move(ids)));
    }
    return REALM_OK;
  }

  bool should_stop(std::string_view text, int32_t) override {
    int64_t n = 0;
    for (size_t i = 0; i < text.size(); ++i) {
      const char c = text[i];
      if (c != '.' && c != '!' && c != '?') continue;
      const bool end = i + 1 == text.size() || text[i + 1] == ' ' || text[i + 1] == '\n';
      if (end && ++n >= max_sentences_) return true;
    }
    return false;
  }

 private:
  int64_t max_sentences_ = 1;
};

}  // namespace

std::unique_ptr<Generator> make_generator() {
  return std::unique_ptr<Generator>(new (std::nothrow) SentenceGenerator());
}

}  // namespace realm::guest
