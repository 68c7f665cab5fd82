// Chat templates rendered by the interpreter against python3-jinja2 (configured as Hugging Face
// transformers configures it), byte for byte: the templates in ../shared/vocab GGUF files, the
// fixtures in testdata/templates and the ChatML fallback, for every message list in
// testdata/messages, with and without the generation prompt.
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

namespace realm::chat {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path testdata() {
  return fs::path(REALM_SOURCE_DIR) / "src/tokenizer/testdata";
}

std::vector<fs::path> sorted_files(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ext) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct NamedTemplate {
  std::string id;
  std::string source;
  std::string bos, eos;
};

struct NamedMessages {
  std::string id;
  jinja::Value messages;
  jinja::Value extra;
};

// Every tokenizer.chat_template[.NAME] string in the shared vocab files.
std::vector<NamedTemplate> gguf_templates() {
  std::vector<NamedTemplate> out;
  for (const auto& path : sorted_files(fs::path(REALM_SHARED_DIR) / "vocab", ".gguf")) {
    auto f = gguf::GgufFile::open(path.string());
    if (!f) {
      ADD_FAILURE() << f.error().message;
      continue;
    }
    for (const auto& kv : f->metadata()) {
      const std::string prefix = "tokenizer.chat_template";
      if (kv.key.rfind(prefix, 0) != 0 || !kv.value.is_string()) continue;
      if (kv.key.size() > prefix.size() && kv.key[prefix.size()] != '.') continue;
      std::string name = kv.key.size() > prefix.size() ? kv.key.substr(prefix.size() + 1) : "";
      auto t = chat_template_from_gguf(*f, name);
      if (!t) {
        ADD_FAILURE() << t.error().message;
        continue;
      }
      out.push_back({path.stem().string() + ":" + kv.key, t->source, t->bos_token, t->eos_token});
    }
  }
  return out;
}

std::vector<NamedTemplate> all_templates() {
  auto out = gguf_templates();
  for (const auto& p : sorted_files(testdata() / "templates", ".jinja")) {
    out.push_back({"fixture:" + p.filename().string(), read_file(p), "<s>", "</s>"});
  }
  // A model without a template: the documented ChatML fallback (llama-spm has none).
  auto f = gguf::GgufFile::open(std::string(REALM_SHARED_DIR) + "/vocab/ggml-vocab-llama-spm.gguf");
  EXPECT_TRUE(f.ok());
  if (f) {
    auto t = chat_template_from_gguf(*f);
    EXPECT_TRUE(t.ok());
    if (t) {
      EXPECT_TRUE(t->is_fallback);
      EXPECT_EQ(t->bos_token, "<s>");
      EXPECT_EQ(t->eos_token, "</s>");
      out.push_back({"fallback:ggml-vocab-llama-spm", t->source, t->bos_token, t->eos_token});
    }
  }
  return out;
}

std::vector<NamedMessages> all_messages() {
  std::vector<NamedMessages> out;
  for (const auto& p : sorted_files(testdata() / "messages", ".json")) {
    NamedMessages m;
    m.id = p.filename().string();
    auto v = messages_from_json_text(read_file(p), &m.extra);
    EXPECT_TRUE(v.ok()) << p << ": " << (v ? "" : v.error().message);
    if (!v) continue;
    m.messages = *v;
    out.push_back(std::move(m));
  }
  return out;
}

// Runs render_jinja.py on the cases; returns its JSON results by case id.
std::map<std::string, nlohmann::json> render_with_python(const std::string& cases_json) {
  fs::path tmp =
      fs::temp_directory_path() / ("realm_chat_cases_" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(tmp, std::ios::binary);
    out << cases_json;
  }
  std::string cmd =
      "python3 '" + (testdata() / "render_jinja.py").string() + "' '" + tmp.string() + "'";
  std::string output;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  EXPECT_NE(pipe, nullptr) << cmd;
  if (pipe) {
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
    int rc = ::pclose(pipe);
    EXPECT_EQ(rc, 0) << "python3 + jinja2 (Debian python3-jinja2) must be installed: " << cmd;
  }
  fs::remove(tmp);
  std::map<std::string, nlohmann::json> results;
  auto j = nlohmann::json::parse(output, nullptr, false);
  EXPECT_TRUE(j.is_array()) << "render_jinja.py output: " << output.substr(0, 500);
  if (!j.is_array()) return results;
  for (auto& r : j) results[r["id"].get<std::string>()] = r;
  return results;
}

TEST(ChatTemplate, VocabFilesWithTemplatesAreCovered) {
  std::set<std::string> vocabs;
  for (const auto& t : gguf_templates()) vocabs.insert(t.id.substr(0, t.id.find(':')));
  for (const char* v :
       {"ggml-vocab-qwen2", "ggml-vocab-qwen35", "ggml-vocab-phi-3", "ggml-vocab-command-r"}) {
    EXPECT_TRUE(vocabs.count(v)) << v << " carries a chat template";
  }
}

TEST(ChatTemplate, MatchesPythonJinja2ByteForByte) {
  auto templates = all_templates();
  auto messages = all_messages();
  ASSERT_GE(templates.size(), 14u);
  ASSERT_GE(messages.size(), 8u);

  struct Case {
    std::string id;
    const NamedTemplate* tmpl;
    ChatInputs inputs;
  };
  std::vector<Case> cases;
  std::string json = "{\"cases\": [";
  for (const auto& t : templates) {
    for (const auto& m : messages) {
      for (bool gen : {true, false}) {
        Case c;
        c.id = t.id + " x " + m.id + (gen ? " +gen" : " -gen");
        c.tmpl = &t;
        c.inputs.messages = m.messages;
        c.inputs.extra = m.extra;
        c.inputs.add_generation_prompt = gen;
        c.inputs.bos_token = t.bos;
        c.inputs.eos_token = t.eos;
        // The same variables render_chat() passes.
        jinja::Value ctx = jinja::Value::object();
        for (const auto& [k, v] : m.extra.as_object().items) ctx.set(k, v);
        ctx.set("messages", m.messages);
        ctx.set("add_generation_prompt", jinja::Value::boolean(gen));
        ctx.set("bos_token", jinja::Value::string(t.bos));
        ctx.set("eos_token", jinja::Value::string(t.eos));
        auto ctx_json = jinja::to_json(ctx);
        auto id_json = jinja::to_json(jinja::Value::string(c.id));
        auto src_json = jinja::to_json(jinja::Value::string(t.source));
        ASSERT_TRUE(ctx_json.ok() && id_json.ok() && src_json.ok());
        json += (cases.empty() ? "" : ",\n") + std::string("{\"id\": ") + *id_json +
                ", \"template\": " + *src_json + ", \"context\": " + *ctx_json + "}";
        cases.push_back(std::move(c));
      }
    }
  }
  json += "]}";

  auto expected = render_with_python(json);
  ASSERT_EQ(expected.size(), cases.size());
  size_t n_ok = 0, n_raise = 0;
  std::set<std::string> templates_rendered;
  for (const auto& c : cases) {
    const auto& want = expected.at(c.id);
    auto got = render_chat(c.tmpl->source, c.inputs);
    if (want["ok"].get<bool>()) {
      ASSERT_TRUE(got.ok()) << c.id << ": " << got.error().message;
      EXPECT_EQ(*got, want["output"].get<std::string>()) << c.id;
      ++n_ok;
      templates_rendered.insert(c.tmpl->id);
    } else {
      std::string err = want["error"].get<std::string>();
      EXPECT_FALSE(got.ok()) << c.id << ": jinja2 raised " << err << ", we rendered:\n" << *got;
      const std::string tag = "TemplateError: ";
      if (!got.ok() && err.rfind(tag, 0) == 0) {  // raise_exception(): same message
        ++n_raise;
        EXPECT_NE(got.error().message.find(err.substr(tag.size())), std::string::npos)
            << c.id << ": " << got.error().message << " vs " << err;
      }
    }
  }
  // Every template renders for some message list; some lists make templates raise.
  EXPECT_EQ(templates_rendered.size(), templates.size());
  EXPECT_GT(n_ok, cases.size() / 2);
  EXPECT_GT(n_raise, 10u);
  std::printf("%zu cases: %zu rendered identically, %zu raised in both (%zu via raise_exception)\n",
              cases.size(), n_ok, cases.size() - n_ok, n_raise);
}

// Random templates of text, tags and whitespace controls (-, +, trim_blocks, lstrip_blocks,
// comments, nested blocks): the whitespace rules must match jinja2 exactly.
std::string random_piece(std::mt19937& rng, int depth) {
  static const char* const kWs[] = {" ", "  ", "\t", "\n", " \n", "\n ", "\n\n", "\t\n  ", ""};
  static const char* const kText[] = {"a", "bc", "x y", "{", "}", "#", "%", "-"};
  static const char* const kMod[] = {"", "", "-", "+"};
  auto pick = [&](auto& arr) { return std::string(arr[rng() % std::size(arr)]); };
  auto ws = [&] { return pick(kWs); };
  auto vmod = [&] { return std::string(rng() % 2 ? "-" : ""); };
  unsigned r = rng() % 100;
  if (r < 30) return ws() + pick(kText) + ws();
  if (r < 45) return ws() + "{{" + vmod() + " v " + vmod() + "}}" + ws();
  if (r < 55) return ws() + "{#" + vmod() + " c " + vmod() + "#}" + ws();
  if (depth >= 3) return ws();
  std::string body;
  for (unsigned k = rng() % 4; k > 0; --k) body += random_piece(rng, depth + 1);
  bool is_if = r < 75;
  std::string open = is_if ? " if true " : " for i in [1, 2] ";
  std::string close = is_if ? " endif " : " endfor ";
  return ws() + "{%" + pick(kMod) + open + pick(kMod) + "%}" + body + ws() + "{%" + pick(kMod) +
         close + pick(kMod) + "%}" + ws();
}

TEST(ChatTemplate, RandomWhitespaceControlMatchesPythonJinja2) {
  std::mt19937 rng(20261125);
  std::vector<std::string> templates;
  std::string json = "{\"cases\": [";
  for (int i = 0; i < 1000; ++i) {
    std::string t;
    for (unsigned k = 1 + rng() % 6; k > 0; --k) t += random_piece(rng, 0);
    auto src = jinja::to_json(jinja::Value::string(t));
    ASSERT_TRUE(src.ok());
    json += (i ? ",\n" : "") + std::string("{\"id\": \"") + std::to_string(i) +
            "\", \"template\": " + *src + ", \"context\": {\"v\": \"V\"}}";
    templates.push_back(std::move(t));
  }
  json += "]}";
  auto expected = render_with_python(json);
  ASSERT_EQ(expected.size(), templates.size());
  jinja::Value ctx = jinja::Value::object();
  ctx.set("v", jinja::Value::string("V"));
  for (size_t i = 0; i < templates.size(); ++i) {
    const auto& want = expected.at(std::to_string(i));
    auto t = jinja::Template::parse(templates[i]);
    auto got = t ? t->render(ctx) : Expected<std::string>(t.error());
    ASSERT_EQ(got.ok(), want["ok"].get<bool>()) << templates[i];
    if (got.ok()) EXPECT_EQ(*got, want["output"].get<std::string>()) << templates[i];
  }
}

TEST(ChatTemplate, GgufBosEosTexts) {
  auto f = gguf::GgufFile::open(std::string(REALM_SHARED_DIR) + "/vocab/ggml-vocab-phi-3.gguf");
  ASSERT_TRUE(f.ok());
  auto t = chat_template_from_gguf(*f);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->is_fallback);
  EXPECT_EQ(t->bos_token, "<s>");
  EXPECT_EQ(t->eos_token, "<|endoftext|>");
  EXPECT_FALSE(chat_template_from_gguf(*f, "tool_use").ok());
}

TEST(ChatTemplate, MessagesJson) {
  jinja::Value extra;
  auto m = messages_from_json_text(
      R"({"messages": [{"role": "user", "content": "x"}], "tools": []})", &extra);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->as_array().size(), 1u);
  ASSERT_NE(extra.get("tools"), nullptr);
  EXPECT_FALSE(messages_from_json_text("[{\"content\": \"no role\"}]", nullptr).ok());
  EXPECT_FALSE(messages_from_json_text("{\"msgs\": []}", nullptr).ok());
  EXPECT_FALSE(messages_from_json_text("[1, 2]", nullptr).ok());
  EXPECT_FALSE(messages_from_json_text("not json", nullptr).ok());
  EXPECT_FALSE(messages_from_json_text(std::string(100000, '['), nullptr).ok());
}

}  // namespace
}  // namespace realm::chat
