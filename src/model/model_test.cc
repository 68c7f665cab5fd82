// The forward pass against llama.cpp's outputs in ../shared/models (see PROVENANCE.md there).
#include "model/model.h"

#include "gguf/split.h"
#include "gguf/writer.h"
#include "tensor/synth_model.h"
#include "util/test_data.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

namespace realm::model {
namespace {

using test_data::shared_dir;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::shared_ptr<const Model> load(const std::string& rel) {
  auto m = Model::load(shared_dir() + "/" + rel);
  if (!m) ADD_FAILURE() << m.error().message;
  return m ? *m : nullptr;
}

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Greedy generation: prompt, then n tokens; returns the ids and the first-step logits.
struct Greedy {
  std::vector<int32_t> ids;
  std::vector<float> first_logits;
};
Greedy run_greedy(const Model& m, const std::vector<int32_t>& prompt, int n, KvType kv,
                  int threads = 2) {
  Workspace ws(threads);
  KvCache cache(m.hparams(), 512, kv);
  std::vector<float> logits(static_cast<size_t>(m.hparams().n_vocab));
  Greedy g;
  std::vector<int32_t> next = prompt;
  for (int i = 0; i < n; ++i) {
    SequenceStep step{&cache, next, false, logits};
    auto st = m.forward({&step, 1}, ws);
    if (!st) {
      ADD_FAILURE() << st.error().message;
      return g;
    }
    if (i == 0) g.first_logits = logits;
    g.ids.push_back(argmax(logits));
    next = {g.ids.back()};
  }
  return g;
}

TEST(ModelReference, Stories260KGreedyMatchesLlamaCpp) {
  auto m = load("models/stories260K.gguf");
  ASSERT_TRUE(m);
  auto ref = read_json(shared_dir() + "/models/reference/stories260K.json");
  for (const auto& p : ref["prompts"]) {
    auto prompt = p["prompt_token_ids"].get<std::vector<int32_t>>();
    auto want = p["continuation_token_ids"].get<std::vector<int32_t>>();
    Greedy g = run_greedy(*m, prompt, static_cast<int>(want.size()), KvType::F16);
    EXPECT_EQ(g.ids, want) << p["prompt"];
    for (const auto& top : p["first_step_top5_logits_raw"]) {
      // The ids are the contract; the logits agree to ~1e-5 on the AVX-512 path (llama.cpp's own
      // F32 summation order) and to ~1.3e-3 on the others.
      EXPECT_NEAR(g.first_logits[top["id"].get<size_t>()], top["logit"].get<float>(), 2e-3)
          << p["prompt"] << " id " << top["id"];
    }
  }
}

TEST(ModelReference, Llama2TinyRandomUpToTheNearTie) {
  auto m = load("models/llama-2-tiny-random.gguf");
  ASSERT_TRUE(m);
  auto ref = read_json(shared_dir() + "/models/reference/llama-2-tiny-random.json");
  for (const auto& p : ref["prompts"]) {
    auto prompt = p["prompt_token_ids"].get<std::vector<int32_t>>();
    auto want = p["continuation_token_ids"].get<std::vector<int32_t>>();
    const int until = p["step_of_min_gap"].get<int>();
    Greedy g = run_greedy(*m, prompt, until, KvType::F16);
    EXPECT_EQ(g.ids, std::vector<int32_t>(want.begin(), want.begin() + until)) << p["prompt"];
    for (const auto& top : p["first_step_top5_logits_raw"]) {
      EXPECT_NEAR(g.first_logits[top["id"].get<size_t>()], top["logit"].get<float>(), 1e-3)
          << p["prompt"] << " id " << top["id"];
    }
  }
}

std::vector<float> read_logits(const std::string& path, size_t n) {
  std::vector<float> v(n);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * 4));
  EXPECT_TRUE(in.good()) << path;
  return v;
}

struct Diff {
  double max_abs = 0, nmse = 0;
};
Diff compare(const std::vector<float>& mine, const std::vector<float>& ref) {
  Diff d;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double e = static_cast<double>(mine[i]) - ref[i];
    d.max_abs = std::max(d.max_abs, std::abs(e));
    num += e * e;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  d.nmse = num / den;
  return d;
}

// PROVENANCE.md §6: default settings against `logits_file` (last row of the table), F32 K/V
// against `logits_file_f32kv` (third row), greedy ids up to the first near-tie.
TEST(ModelReference, QuantizedFilesMatchLlamaCpp) {
  auto ref = read_json(shared_dir() + "/models/quant/reference.json");
  for (const auto& file : ref["files"]) {
    const std::string name = file["file"];
    auto m = load("models/quant/" + name);
    ASSERT_TRUE(m);
    const std::string ft = file["file_type_name"];
    const bool f16_like = ft == "MOSTLY_F16" || ft == "MOSTLY_BF16";
    const bool is_f32 = ft == "ALL_F32";
    double def_abs = is_f32 ? 0.05 : ft == "MOSTLY_F16" ? 0.05 : ft == "MOSTLY_BF16" ? 0.3 : 1.5;
    double def_nmse = is_f32                ? 1e-6
                      : ft == "MOSTLY_F16"  ? 2e-6
                      : ft == "MOSTLY_BF16" ? 1e-4
                                            : 1.5e-3;
    double f32kv_abs = f16_like ? 0.03 : 1e-3, f32kv_nmse = f16_like ? 1e-6 : 1e-9;
    for (const auto& p : file["prompts"]) {
      auto prompt = p["prompt_ids"].get<std::vector<int32_t>>();
      const size_t n_vocab = p["n_vocab"];
      auto want = p["greedy_ids"].get<std::vector<int32_t>>();
      auto gaps = p["top2_gaps"].get<std::vector<double>>();

      Greedy g = run_greedy(*m, prompt, static_cast<int>(want.size()), KvType::F16);
      Diff d = compare(g.first_logits, read_logits(shared_dir() + "/models/quant/" +
                                                       p["logits_file"].get<std::string>(),
                                                   n_vocab));
      EXPECT_LE(d.max_abs, def_abs) << name << " " << p["prompt"];
      EXPECT_LE(d.nmse, def_nmse) << name << " " << p["prompt"];
      const double tau = std::max(1e-3, 2 * d.max_abs);
      for (size_t i = 0; i < want.size() && gaps[i] >= tau; ++i) {
        ASSERT_EQ(g.ids[i], want[i]) << name << " " << p["prompt"] << " step " << i;
      }

      Greedy g32 = run_greedy(*m, prompt, 1, KvType::F32);
      Diff d32 = compare(
          g32.first_logits,
          read_logits(shared_dir() + "/models/quant/" + p["logits_file_f32kv"].get<std::string>(),
                      n_vocab));
      EXPECT_LE(d32.max_abs, f32kv_abs) << name << " f32kv " << p["prompt"];
      EXPECT_LE(d32.nmse, f32kv_nmse) << name << " f32kv " << p["prompt"];
      std::printf("%-28s %-18s default max|d| %.2e nmse %.2e | f32kv max|d| %.2e nmse %.2e\n",
                  name.c_str(), p["prompt"].get<std::string>().c_str(), d.max_abs, d.nmse,
                  d32.max_abs, d32.nmse);
    }
  }
}

// Architecture variants: loader rules (these files are small synth models; the comparison of
// each variant with llama.cpp itself is tests/js/llamacpp_archs_test.mjs).
std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("realm-model-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

std::string write_synth(const std::string& name, tensor::SynthConfig c, uint32_t n_embd = 64,
                        uint32_t n_head = 2, uint32_t n_head_kv = 1) {
  auto vocab = gguf::GgufFile::open(shared_dir() + "/models/stories260K.gguf");
  if (!vocab) ADD_FAILURE() << vocab.error().message;
  c.n_embd = n_embd;
  c.n_layer = 2;
  c.n_head = n_head;
  c.n_head_kv = n_head_kv;
  c.n_ff = 128;
  c.seed = 7;
  const std::string path = temp_path(name);
  auto st = tensor::write_synth_model(c, *vocab, path);
  if (!st) ADD_FAILURE() << st.error().message;
  return path;
}

// Chunk invariance: a sequence's logits are a function of its tokens only. Every position's
// logits are bit-identical whether the tokens come in one step, in random chunks, 256 at a time,
// one at a time, or batched with another sequence's steps (before or after it in the batch), on
// either cache type. Prompt lengths around the tile and chunk sizes and random ones up to 1200.
std::vector<float> run_split(const Model& m, const std::vector<int32_t>& tokens,
                             const std::vector<size_t>& sizes, KvType kv, std::mt19937* noise) {
  const size_t V = static_cast<size_t>(m.hparams().n_vocab);
  Workspace ws(2);
  KvCache cache(m.hparams(), static_cast<int64_t>(tokens.size()) + 8, kv);
  KvCache other(m.hparams(), 512, kv);
  std::vector<float> all(tokens.size() * V);
  size_t done = 0;
  for (size_t n : sizes) {
    std::vector<SequenceStep> steps;
    std::vector<int32_t> noise_tokens;
    std::vector<float> noise_logits;
    SequenceStep mine{&cache, std::span<const int32_t>(tokens).subspan(done, n), true,
                      std::span<float>(all).subspan(done * V, n * V)};
    if (noise && other.size() < 400) {
      const size_t nn = 1 + (*noise)() % 40;
      for (size_t i = 0; i < nn; ++i) noise_tokens.push_back(static_cast<int32_t>(3 + i % 200));
      noise_logits.resize(V);
      SequenceStep o{&other, noise_tokens, false, noise_logits};
      if ((*noise)() % 2) {
        steps = {o, mine};
      } else {
        steps = {mine, o};
      }
    } else {
      steps = {mine};
    }
    auto st = m.forward(steps, ws);
    if (!st) {
      ADD_FAILURE() << st.error().message;
      return {};
    }
    done += n;
  }
  return all;
}

TEST(ModelChunking, LogitsDoNotDependOnHowTokensAreSplit) {
  tensor::SynthConfig wide;  // head size 128
  wide.ftype = tensor::FileType::MOSTLY_Q8_0;
  const std::string wide_path = write_synth("chunk-hd128.gguf", wide, 256, 2, 2);
  const std::vector<std::pair<std::string, std::string>> models = {
      {"hd 64, GQA, Q4_K_M", shared_dir() + "/models/quant/synth-128x2.Q4_K_M.gguf"},
      {"hd 64, F32", shared_dir() + "/models/quant/synth-256x2.f32.gguf"},
      {"hd 8", shared_dir() + "/models/stories260K.gguf"},
      {"hd 128, Q8_0", wide_path}};
  std::mt19937 rng(11);
  // Lengths around the kernels' block sizes (4-cell score blocks, 16-token matmul tiles, 64) and
  // the sandbox's old 256-token chunks; the first model also gets long prompts up to 1200.
  const std::vector<size_t> short_lengths = {1, 2, 15, 16, 17, 63, 64, 65, 257};
  for (const auto& [what, path] : models) {
    std::vector<size_t> lengths = short_lengths;
    if (what == models.front().first) {
      lengths.push_back(300 + rng() % 900);
      lengths.push_back(1200);
    }
    auto loaded = Model::load(path);
    ASSERT_TRUE(loaded) << loaded.error().message;
    const Model& m = **loaded;
    const auto n_vocab = static_cast<uint32_t>(m.hparams().n_vocab);
    for (KvType kv : {KvType::F16, KvType::F32}) {
      for (size_t len : lengths) {
        std::vector<int32_t> tokens = {1};
        while (tokens.size() < len)
          tokens.push_back(static_cast<int32_t>(3 + rng() % (n_vocab - 3)));
        const std::vector<float> whole = run_split(m, tokens, {len}, kv, nullptr);
        std::vector<std::pair<std::string, std::vector<size_t>>> splits;
        std::vector<size_t> random, by256, ones;
        for (size_t done = 0; done < len;) {
          const size_t n = std::min(len - done, 1 + static_cast<size_t>(rng() % 300));
          random.push_back(n);
          done += n;
        }
        for (size_t done = 0; done < len; done += 256)
          by256.push_back(std::min<size_t>(256, len - done));
        splits.push_back({"random chunks", random});
        splits.push_back({"256-token chunks", by256});
        if (len <= 65 || len == 257) {
          ones.assign(len, 1);
          splits.push_back({"one token at a time", ones});
        }
        for (const auto& [how, sizes] : splits) {
          for (bool batched : {false, true}) {
            std::mt19937 noise(static_cast<uint32_t>(len));
            const std::vector<float> got =
                run_split(m, tokens, sizes, kv, batched ? &noise : nullptr);
            ASSERT_EQ(got.size(), whole.size());
            EXPECT_EQ(std::memcmp(got.data(), whole.data(), got.size() * sizeof(float)), 0)
                << what << (kv == KvType::F16 ? " f16" : " f32") << " cache, " << len << " tokens, "
                << how << (batched ? ", batched" : "");
          }
        }
      }
    }
  }
}

// Weights repacked at load for the kernels give the same bits as the rows as stored (every
// packable type, prefill on the tiled path and single-token decode, both cache types).
TEST(ModelPacking, PackedAndStoredWeightsGiveTheSameLogits) {
  const char* files[] = {"synth-256x2.Q2_K.gguf",   "synth-256x2.Q3_K_M.gguf",
                         "synth-256x2.Q4_K_M.gguf", "synth-256x2.Q5_K_M.gguf",
                         "synth-256x2.Q6_K.gguf",   "synth-128x2.Q8_0.gguf",
                         "synth-128x2.Q4_0.gguf"};
  std::vector<int32_t> prompt = {1};
  for (int i = 0; i < 69; ++i) prompt.push_back(static_cast<int32_t>((31 * i + 7) % 500 + 3));
  for (const char* f : files) {
    ASSERT_EQ(setenv("REALM_NO_PACK", "1", 1), 0);
    auto plain = load(std::string("models/quant/") + f);
    ASSERT_EQ(unsetenv("REALM_NO_PACK"), 0);
    auto packed = load(std::string("models/quant/") + f);
    ASSERT_TRUE(plain && packed);
    for (KvType kv : {KvType::F16, KvType::F32}) {
      const Greedy a = run_greedy(*plain, prompt, 4, kv);
      const Greedy b = run_greedy(*packed, prompt, 4, kv);
      EXPECT_EQ(a.ids, b.ids) << f;
      ASSERT_EQ(a.first_logits.size(), b.first_logits.size());
      EXPECT_EQ(std::memcmp(a.first_logits.data(), b.first_logits.data(),
                            a.first_logits.size() * sizeof(float)),
                0)
          << f;
    }
  }
}

// A temporary directory removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "realm-model-XXXXXX").string();
    path = mkdtemp(t.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

bool same_logits(const Greedy& a, const Greedy& b) {
  return a.ids == b.ids && a.first_logits.size() == b.first_logits.size() &&
         std::memcmp(a.first_logits.data(), b.first_logits.data(),
                     a.first_logits.size() * sizeof(float)) == 0;
}

const std::vector<int32_t> kSomePrompt = {1, 15, 300, 22, 7, 99, 401, 5};

// A model split into shards (llama.cpp's gguf-split naming) loads from any shard as one model
// with the same logits; a missing or inconsistent shard is an error naming it.
TEST(ModelShards, SplitModelGivesTheSameLogits) {
  const std::string src = shared_dir() + "/models/quant/synth-256x2.Q4_K_M.gguf";
  auto whole = Model::load(src);
  ASSERT_TRUE(whole) << whole.error().message;
  auto in = gguf::GgufFile::open(src);
  ASSERT_TRUE(in);
  TempDir dir;
  const std::string prefix = (dir.path / "m").string();
  auto paths = gguf::write_split(*in, prefix, 7);
  ASSERT_TRUE(paths) << paths.error().message;
  ASSERT_GE(paths->size(), 3u);
  const Greedy want = run_greedy(**whole, kSomePrompt, 3, KvType::F16);
  for (const std::string& p : {paths->front(), paths->back()}) {
    auto m = Model::load(p);
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ((*m)->file().get_string("general.architecture"),
              (*whole)->file().get_string("general.architecture"));
    EXPECT_TRUE(same_logits(run_greedy(**m, kSomePrompt, 3, KvType::F16), want)) << p;
  }
  // A missing shard.
  std::filesystem::rename((*paths)[1], (*paths)[1] + ".away");
  auto missing = Model::load(paths->front());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("shard 2 of"), std::string::npos)
      << missing.error().message;
  // A shard renamed so its name no longer says its place.
  std::filesystem::rename((*paths)[1] + ".away", (*paths)[1]);
  std::filesystem::copy_file(paths->front(), (dir.path / "renamed.gguf"));
  auto renamed = Model::load((dir.path / "renamed.gguf").string());
  ASSERT_FALSE(renamed);
  EXPECT_NE(renamed.error().message.find("file name"), std::string::npos)
      << renamed.error().message;
}

// The packed-weight cache: written on the first load, mapped on the next with the same logits;
// a corrupt, truncated or stale cache is rebuilt, never used.
TEST(ModelPackCache, WrittenThenMappedAndRebuiltWhenBad) {
  TempDir dir;
  const std::string src = (dir.path / "model.gguf").string();
  std::filesystem::copy_file(shared_dir() + "/models/quant/synth-256x2.Q4_K_M.gguf", src);
  auto plain = Model::load(src);
  ASSERT_TRUE(plain);
  const Greedy want = run_greedy(**plain, kSomePrompt, 3, KvType::F16);
  LoadOptions opt;
  opt.pack_cache_dir = (dir.path / "cache").string();
  auto load_with = [&](const char* expect) {
    LoadReport r;
    auto m = Model::load(src, opt, &r);
    EXPECT_TRUE(m) << m.error().message;
    if (!m) return r;
    if (expect != nullptr) {
      EXPECT_EQ(r.pack_cache.substr(0, std::strlen(expect)), expect) << r.pack_cache;
    }
    EXPECT_TRUE(same_logits(run_greedy(**m, kSomePrompt, 3, KvType::F16), want)) << r.pack_cache;
    return r;
  };
  const LoadReport first = load_with(nullptr);
  if (first.pack_cache == "none") return;  // a kernel path with nothing to pack
  EXPECT_EQ(first.pack_cache, "written");
  ASSERT_EQ(load_with("hit").pack_cache, "hit");
  const std::string cache = load_with("hit").cache_path;
  ASSERT_TRUE(std::filesystem::exists(cache));
  // One flipped bit in the middle of the data.
  {
    std::fstream f(cache, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = std::filesystem::file_size(cache);
    f.seekg(static_cast<std::streamoff>(size - 5000));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(static_cast<std::streamoff>(size - 5000));
    f.write(&c, 1);
  }
  EXPECT_NE(load_with("rebuilt").pack_cache.find("corrupt"), std::string::npos);
  load_with("hit");
  // Truncated.
  std::filesystem::resize_file(cache, std::filesystem::file_size(cache) / 2);
  load_with("rebuilt");
  // The source changed (its modification time).
  std::filesystem::last_write_time(
      src, std::filesystem::last_write_time(src) + std::chrono::seconds(10));
  EXPECT_NE(load_with("rebuilt").pack_cache.find("stale"), std::string::npos);
  load_with("hit");
  // A known sha256 is part of the key.
  opt.source_sha256 = std::string(64, 'a');
  load_with("rebuilt");
  // A directory that cannot be written: the load still works, packed in memory.
  opt.pack_cache_dir = "/proc/realm-no-such-dir";
  load_with("not written");
}

// Eight sessions over one model, stepped concurrently from two threads in shared, shifting
// batches, each get bit-identical logits to a lone run.
TEST(ModelBatching, SessionsInSharedBatchesMatchLoneRuns) {
  auto m = load("models/quant/synth-128x2.Q4_K_M.gguf");
  ASSERT_TRUE(m);
  const int n_seq = 8, n_steps = 6;
  const size_t V = static_cast<size_t>(m->hparams().n_vocab);
  std::vector<std::vector<int32_t>> prompts;
  for (int s = 0; s < n_seq; ++s) {
    std::vector<int32_t> p = {1};
    for (int i = 0; i <= s; ++i) p.push_back(static_cast<int32_t>((37 * s + 11 * i) % 500 + 3));
    prompts.push_back(p);
  }
  // Lone runs: prompt then n_steps greedy tokens; record every step's logits.
  std::vector<std::vector<std::vector<float>>> lone(n_seq);
  std::vector<std::vector<int32_t>> lone_ids(n_seq);
  for (int s = 0; s < n_seq; ++s) {
    Workspace ws(1);
    KvCache c(m->hparams(), 64, KvType::F16);
    std::vector<int32_t> next = prompts[s];
    for (int i = 0; i < n_steps; ++i) {
      std::vector<float> logits(V);
      SequenceStep st{&c, next, false, logits};
      ASSERT_TRUE(m->forward({&st, 1}, ws).ok());
      lone[s].push_back(logits);
      lone_ids[s].push_back(argmax(logits));
      next = {lone_ids[s].back()};
    }
  }
  // Two threads, each owning four sessions, batching them together with different widths.
  auto worker = [&](int first) {
    Workspace ws(2);
    std::vector<std::unique_ptr<KvCache>> caches;
    std::vector<std::vector<int32_t>> next;
    std::vector<int> done(4, 0);
    for (int j = 0; j < 4; ++j) {
      caches.push_back(std::make_unique<KvCache>(m->hparams(), 64, KvType::F16));
      next.push_back(prompts[first + j]);
    }
    for (int round = 0; round < n_steps + 3; ++round) {
      std::vector<SequenceStep> steps;
      std::vector<std::vector<float>> out;
      std::vector<int> who;
      for (int j = 0; j < 4; ++j) {
        // Session j starts j / 2 rounds late so batches mix prefills and decodes.
        if (round < j / 2 || done[j] == n_steps) continue;
        who.push_back(j);
      }
      out.resize(who.size(), std::vector<float>(V));
      for (size_t w = 0; w < who.size(); ++w) {
        steps.push_back({caches[who[w]].get(), next[who[w]], false, out[w]});
      }
      if (steps.empty()) continue;
      auto st = m->forward(steps, ws);
      if (!st) {
        ADD_FAILURE() << st.error().message;
        return;
      }
      for (size_t w = 0; w < who.size(); ++w) {
        int j = who[w], s = first + j;
        if (out[w] != lone[s][done[j]]) {
          ADD_FAILURE() << "session " << s << " step " << done[j] << " differs from its lone run";
        }
        next[j] = {lone_ids[s][done[j]]};
        ++done[j];
      }
    }
  };
  std::thread a(worker, 0), b(worker, 4);
  a.join();
  b.join();
}

TEST(ModelErrors, BadStepsAreRejected) {
  auto m = load("models/stories260K.gguf");
  ASSERT_TRUE(m);
  Workspace ws(1);
  KvCache c(m->hparams(), 4, KvType::F32);
  std::vector<float> logits(512);
  std::vector<int32_t> bad = {1, 600};
  SequenceStep st{&c, bad, false, logits};
  auto r = m->forward({&st, 1}, ws);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("token id 600 is out of range"), std::string::npos);
  std::vector<int32_t> many = {1, 2, 3, 4, 5};
  st.tokens = many;
  r = m->forward({&st, 1}, ws);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("exceed the context size 4"), std::string::npos);
  EXPECT_EQ(c.size(), 0);
  auto missing = Model::load(shared_dir() + "/vocab/ggml-vocab-llama-spm.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("missing tensor 'token_embd.weight'"), std::string::npos);
}

// A copy of `src` without the tensors `drop` matches, with `edit` applied to the writer.
std::string rewrite(const std::string& src, const std::string& name,
                    const std::function<bool(const std::string&)>& drop,
                    const std::function<void(gguf::GgufWriter&)>& edit) {
  auto f = gguf::GgufFile::open(src);
  if (!f) ADD_FAILURE() << f.error().message;
  gguf::GgufWriter w;
  for (const auto& kv : f->metadata()) w.add_kv(kv.key, kv.value);
  for (const auto& t : f->tensors()) {
    if (!drop(t.name)) w.add_tensor(t.name, t.type, t.dims, t.bytes());
  }
  edit(w);
  const std::string path = temp_path(name);
  auto st = w.write_file(path);
  if (!st) ADD_FAILURE() << st.error().message;
  return path;
}

std::vector<float> prompt_logits(const std::string& path) {
  auto m = Model::load(path);
  if (!m) {
    ADD_FAILURE() << m.error().message;
    return {};
  }
  return run_greedy(**m, {1, 300, 42, 17, 99, 256, 5}, 1, KvType::F32, 1).first_logits;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return INFINITY;
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double{a[i]} - b[i]));
  return d;
}

TEST(ModelArchitectures, QkvBiasesAreOptionalAndUsedForEveryArchitecture) {
  for (const char* arch : {"llama", "qwen2"}) {
    tensor::SynthConfig c;
    c.arch = arch;
    c.attn_bias = true;
    const std::string with = write_synth(std::string(arch) + "-bias.gguf", c);
    const std::string without = rewrite(
        with, std::string(arch) + "-nobias.gguf",
        [](const std::string& n) { return n.ends_with(".bias"); }, [](gguf::GgufWriter&) {});
    const double d = max_abs_diff(prompt_logits(with), prompt_logits(without));
    EXPECT_GT(d, 1e-2) << arch << ": the biases change nothing";
    EXPECT_TRUE(std::isfinite(d)) << arch;
    std::filesystem::remove(with);
    std::filesystem::remove(without);
  }
}

TEST(ModelArchitectures, TensorsTheLoaderWouldIgnoreAreRefused) {
  const std::string base = write_synth("plain.gguf", {});
  const std::vector<float> bias(64, 0.5f);
  const std::string extra = rewrite(
      base, "extra.gguf", [](const std::string&) { return false; },
      [&](gguf::GgufWriter& w) {
        w.add_tensor("blk.0.attn_output.bias", gguf::GgmlType::F32, {64},
                     {reinterpret_cast<const uint8_t*>(bias.data()), bias.size() * 4});
      });
  auto m = Model::load(extra);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("tensor 'blk.0.attn_output.bias' is not supported"),
            std::string::npos)
      << m.error().message;
  std::filesystem::remove(base);
  std::filesystem::remove(extra);
}

// The rope scaling keys, read as llama.cpp reads them (llama-model.cpp, load_hparams).
TEST(ModelArchitectures, RopeScalingKeys) {
  const std::string base = write_synth("rope.gguf", {});
  const std::vector<float> ref = prompt_logits(base);
  auto variant = [&](const std::string& name, const std::function<void(gguf::GgufWriter&)>& edit) {
    return rewrite(
        base, name, [](const std::string&) { return false; }, edit);
  };
  using gguf::Value;
  const std::string linear = variant("linear.gguf", [](gguf::GgufWriter& w) {
    w.set_kv("llama.rope.scaling.type", Value::string("linear"));
    w.set_kv("llama.rope.scaling.factor", Value::f32(4.0f));
  });
  const std::string old_key = variant("old-key.gguf", [](gguf::GgufWriter& w) {
    w.set_kv("llama.rope.scale_linear", Value::f32(4.0f));  // type defaults to linear
  });
  const std::string none = variant("none.gguf", [](gguf::GgufWriter& w) {
    w.set_kv("llama.rope.scaling.type", Value::string("none"));
    w.set_kv("llama.rope.scaling.factor", Value::f32(4.0f));  // ignored with type none
  });
  const std::string zero = variant("zero.gguf", [](gguf::GgufWriter& w) {
    w.set_kv("llama.rope.scaling.factor", Value::f32(0.0f));  // 0 = no scaling
  });
  const std::string attn = variant("attn.gguf", [](gguf::GgufWriter& w) {
    w.set_kv("llama.rope.scaling.attn_factor", Value::f32(0.5f));
  });
  const std::string yarn = variant("yarn.gguf", [](gguf::GgufWriter& w) {
    w.set_kv("llama.rope.scaling.type", Value::string("yarn"));
    w.set_kv("llama.rope.scaling.factor", Value::f32(4.0f));
  });
  auto m = Model::load(linear);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ((*m)->hparams().rope_freq_scale, 0.25f);
  const std::vector<float> lin = prompt_logits(linear);
  EXPECT_GT(max_abs_diff(lin, ref), 1e-3);
  EXPECT_EQ(max_abs_diff(prompt_logits(old_key), lin), 0.0);
  EXPECT_EQ(max_abs_diff(prompt_logits(none), ref), 0.0);
  EXPECT_EQ(max_abs_diff(prompt_logits(zero), ref), 0.0);
  auto a = Model::load(attn);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ((*a)->hparams().rope_attn_factor, 0.5f);
  EXPECT_GT(max_abs_diff(prompt_logits(attn), ref), 1e-3);
  auto y = Model::load(yarn);
  ASSERT_FALSE(y.ok());
  EXPECT_NE(y.error().message.find("unsupported rope scaling type 'yarn'"), std::string::npos);
  for (const auto& p : {base, linear, old_key, none, zero, attn, yarn}) std::filesystem::remove(p);
}

}  // namespace
}  // namespace realm::model
