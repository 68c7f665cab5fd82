// The llama-family forward pass (llama 1/2/3, TinyLlama, Mistral without sliding window,
// SmolLM, Qwen2): pre-norm decoder blocks of RMSNorm -> attention with RoPE and grouped KV heads
// -> residual -> RMSNorm -> SwiGLU FFN -> residual.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "model/model.h"
#include "tensor/blocks.h"
#include "tensor/kernels/kernels.h"
#include "tensor/type_table.h"
#include "util/thread_pool.h"

namespace realm::model {
namespace {

// x * y + z rounded once to float, exactly like a hardware FMA, without calling libm's fma: the
// product is exact in double, the sum's rounding error is recovered exactly (TwoSum), and the sum
// is rounded to odd (an inexact even result moves one step towards the true value), after which the
// rounding to float is correct because double has more than 2 x 24 + 1 bits. Branch-free so loops
// over it vectorize.
inline float fma_exact(float x, float y, float z) {
  const double p = static_cast<double>(x) * y;
  const double s = p + z;
  const double bz = s - p;
  const double err = (p - (s - bz)) + (static_cast<double>(z) - bz);
  const uint64_t bits = std::bit_cast<uint64_t>(s);
  // (|err| > 0 is false for NaN: an infinite or NaN sum is passed through unchanged.)
  const uint64_t even_inexact = static_cast<uint64_t>(std::fabs(err) > 0.0) & ~bits;
  const auto down = static_cast<uint64_t>((err > 0.0) != (s > 0.0));
  const uint64_t step = (even_inexact ^ (uint64_t{0} - down)) + down;
  return static_cast<float>(std::bit_cast<double>(bits + step));
}

}  // namespace

struct Forward {
  const Model& m;
  Workspace& ws;
  const tensor::KernelTable& kt;
  const Hparams& hp;
  std::span<const SequenceStep> steps;
  int64_t n_tok = 0;
  std::vector<int32_t> tok_seq;  // step index of each batch row
  std::vector<int64_t> tok_pos;  // position of each batch row in its sequence

  std::mutex err_mu;
  std::optional<Error> err;

  void fail(Error e) {
    std::lock_guard<std::mutex> lock(err_mu);
    if (!err) err = std::move(e);
  }

  void parallel(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    ws.pool_->parallel_for(n, grain, fn);
  }

  // y = x / sqrt(mean(x^2) + eps) * w per row; the sum of squares is accumulated in double, as
  // ggml does.
  void rms_norm(const float* x, const std::vector<float>& w, float* y, int64_t rows) {
    const int64_t n = hp.n_embd;
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i] * xr[i]);
      const float mean = static_cast<float>(sum / static_cast<double>(n));
      const float scale = 1.0f / std::sqrt(mean + hp.rms_eps);
      for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * scale) * w[static_cast<size_t>(i)];
    }
  }

  // out[t][r] = W row r . in row t, for several weights sharing one input: the input is quantized
  // once per activation type.
  struct Target {
    const Weight* w;
    float* out;
  };
  void linear(std::initializer_list<Target> targets, const float* in, int64_t rows) {
    const int64_t n_cols = targets.begin()->w->n_cols;
    std::optional<GgmlType> quantized_as;
    const void* a = nullptr;
    size_t a_stride = 0;
    for (const Target& t : targets) {
      GgmlType act = *tensor::activation_type(t.w->type);
      if (act == GgmlType::F32) {
        a = in;
        a_stride = static_cast<size_t>(n_cols) * sizeof(float);
      } else if (quantized_as != act) {
        a_stride = static_cast<size_t>(*gguf::row_bytes(act, static_cast<uint64_t>(n_cols)));
        ws.qbuf_.resize(a_stride * static_cast<size_t>(rows));
        parallel(rows, 1, [&](int64_t r0, int64_t r1) {
          auto st =
              tensor::quantize_rows(kt, act, in + r0 * n_cols, static_cast<size_t>(n_cols), r1 - r0,
                                    n_cols, ws.qbuf_.data() + r0 * a_stride, a_stride);
          if (!st) fail(st.take_error());
        });
        quantized_as = act;
        a = ws.qbuf_.data();
      } else {
        a = ws.qbuf_.data();
      }
      const Weight& w = *t.w;
      tensor::MatmulArgs args;
      args.w_type = w.type;
      args.packed = w.packed;
      args.w = w.data;
      args.w_stride = w.row_bytes;
      args.n_cols = n_cols;
      args.a = a;
      args.a_stride = a_stride;
      args.n_tok = rows;
      args.out = t.out;
      args.out_stride = static_cast<size_t>(w.n_rows);
      // Row ranges in whole packed groups.
      parallel(w.n_rows, tensor::kPackRows, [&](int64_t r0, int64_t r1) {
        tensor::MatmulArgs part = args;
        part.r0 = r0;
        part.r1 = r1;
        auto st = tensor::matmul(kt, part);
        if (!st) fail(st.take_error());
      });
    }
  }

  // cos and sin of every token's rotation angles, computed once per forward pass (the same for
  // every layer and for q and k): rope_cs[t * n_rot + 2i] = cos, + 1 = sin.
  std::vector<float> rope_cs;
  void rope_tables() {
    const int64_t n_rot = hp.n_rot;
    const float theta_scale = std::pow(hp.rope_freq_base, -2.0f / static_cast<float>(n_rot));
    rope_cs.resize(static_cast<size_t>(n_tok * n_rot));
    for (int64_t t = 0; t < n_tok; ++t) {
      // ggml builds the angles by repeated multiplication in float; do the same.
      float theta = static_cast<float>(tok_pos[static_cast<size_t>(t)]);
      float* cs = rope_cs.data() + t * n_rot;
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        const float ff = m.rope_freqs_.empty() ? 1.0f : m.rope_freqs_[static_cast<size_t>(i)];
        const float angle = hp.rope_freq_scale * (theta / ff);
        // ggml's rope_yarn: cos and sin times mscale (rope.scaling.attn_factor; 1 is exact).
        cs[2 * i] = std::cos(angle) * hp.rope_attn_factor;
        cs[2 * i + 1] = std::sin(angle) * hp.rope_attn_factor;
        theta *= theta_scale;
      }
    }
  }

  // Rotates each head of `x` (rows of n_heads * head_dim) by its token's position.
  void rope(float* x, int64_t n_heads) {
    const int64_t hd = hp.head_dim, n_rot = hp.n_rot;
    for (int64_t t = 0; t < n_tok; ++t) {
      const float* cs = rope_cs.data() + t * n_rot;
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + (t * n_heads + h) * hd;
        for (int64_t i = 0; i < n_rot / 2; ++i) {
          const int64_t a = hp.rope_type == RopeType::NORM ? 2 * i : i;
          const int64_t b = hp.rope_type == RopeType::NORM ? 2 * i + 1 : i + n_rot / 2;
          const float c = cs[2 * i], s = cs[2 * i + 1];
          const float x0 = v[a], x1 = v[b];
          // ggml's rotate_pairs is compiled with GCC's default -ffp-contract=fast, which fuses the
          // first product of each expression: x0*c - x1*s -> fma(x0, c, -(x1*s)), likewise below.
          v[a] = fma_exact(x0, c, -(x1 * s));
          v[b] = fma_exact(x0, s, x1 * c);
        }
      }
    }
  }

  void store_kv(int64_t il, const float* k, const float* v) {
    const int64_t n = hp.n_embd_kv();
    for (int64_t t = 0; t < n_tok; ++t) {
      KvCache& c = *steps[static_cast<size_t>(tok_seq[static_cast<size_t>(t)])].cache;
      const int64_t pos = tok_pos[static_cast<size_t>(t)];
      uint8_t* kd = c.k_at(il, pos);
      uint8_t* vd = c.v_at(il, pos);
      if (c.type() == KvType::F16) {
        auto* k16 = reinterpret_cast<tensor::Fp16*>(kd);
        auto* v16 = reinterpret_cast<tensor::Fp16*>(vd);
        for (int64_t i = 0; i < n; ++i) {
          k16[i] = tensor::f32_to_fp16(k[t * n + i]);
          v16[i] = tensor::f32_to_fp16(v[t * n + i]);
        }
      } else {
        std::memcpy(kd, k + t * n, static_cast<size_t>(n) * sizeof(float));
        std::memcpy(vd, v + t * n, static_cast<size_t>(n) * sizeof(float));
      }
    }
  }

  // Tiles of the transposed K cache (F32 caches, steps of several tokens).
  static constexpr int64_t kTile = 64;
  // Whether a step's attention on an F32 cache reads K from transposed tiles (the transposition
  // pays off over the queries of a step; single tokens read the rows). Both give the same bits.
  static bool k_tiled(const SequenceStep& s) {
    return s.cache->type() == KvType::F32 && s.tokens.size() >= 8;
  }

  // One query row of llama.cpp's one-query flash attention on an F16 cache
  // (ggml_compute_forward_flash_attn_ext_f16 for a single query), up to the value accumulation:
  // the query rounded to F16, scores of F16 values (kt.fa_scores), then the online softmax's
  // factors per cell: where the score s is a new maximum, the accumulator is rescaled by
  // ms = exp(m_old - s) and v is added with weight 1; otherwise v is added with weight
  // vs = exp(s - m).
  // K is read from layer il of cache c, KV head g, block by block.
  void fa_row_factors(const float* q, const KvCache& c, int64_t il, int64_t g, int64_t n_kv,
                      float scale, float* qh, float* scores, float* ms, float* vs) const {
    const int64_t hd = hp.head_dim;
    for (int64_t d = 0; d < hd; ++d) qh[d] = tensor::fp16_to_f32(tensor::f32_to_fp16(q[d]));
    for (int64_t j0 = 0; j0 < n_kv; j0 += kKvBlockTokens) {
      const auto* k = reinterpret_cast<const uint16_t*>(c.k_at(il, j0)) + g * hd;
      kt.fa_scores(qh, k, static_cast<size_t>(hp.n_embd_kv()), std::min(kKvBlockTokens, n_kv - j0),
                   hd, scores + j0);
    }
    float m_run = -INFINITY;
    for (int64_t j = 0; j < n_kv; ++j) {
      const float s = scores[j] * scale;
      if (s > m_run) {
        ms[j] = std::exp(m_run - s);
        vs[j] = 1.0f;
        m_run = s;
      } else {
        ms[j] = 1.0f;
        vs[j] = std::exp(s - m_run);
      }
    }
  }

  // Causal attention of every (token, head) over its own sequence's cache. Each query row's
  // arithmetic depends only on that row and the cells before it, never on how its sequence's
  // tokens were split into steps or what else is in the batch (chunk and batch invariance).
  //
  // F16 cache: llama.cpp's one-query CPU flash attention (its default for decoding), for every
  // row: the query rounded to F16, each K.q dot as ggml_vec_dot_f16 (kt.fa_scores), the online
  // softmax (running max and sum) and the V accumulator kept in F16, rounded after every update
  // (kt.fa_accumulate, several rows of one token in lockstep). llama.cpp itself takes a tiled
  // kernel (F32 query and accumulator, 64-cell tiles) for prompts of >= 64 tokens, so its logits
  // depend on the batch; we keep the one-query arithmetic everywhere, which llama.cpp's decode
  // steps and short prompts match to the bit (../shared/models/quant). Not emulated either: for one
  // query over >= 512 cache cells llama.cpp splits the cells across its threads and merges partial
  // results; there logits agree only approximately.
  // F32 cache: plain scores, softmax with a double sum, f32 V accumulation (llama.cpp's non-flash
  // path).
  void attention(int64_t il, const float* q, float* out) {
    const int64_t hd = hp.head_dim, n_head = hp.n_head, row = hp.n_embd_kv();
    const int64_t group = hp.n_head / hp.n_head_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    // F32 sequences with several tokens: their K cache transposed once per layer into [kv head]
    // [tile][d][cell] (cells past the end zero), shared by all their query rows and heads.
    const int64_t n_head_kv = hp.n_head_kv;
    std::vector<size_t> kt_at(steps.size(), 0);
    size_t kt_total = 0;
    for (size_t s = 0; s < steps.size(); ++s) {
      if (!k_tiled(steps[s])) continue;
      kt_at[s] = kt_total;
      const int64_t n = steps[s].cache->size() + static_cast<int64_t>(steps[s].tokens.size());
      kt_total += static_cast<size_t>(n_head_kv * ((n + kTile - 1) / kTile) * hd * kTile);
    }
    ws.k_tiles_.resize(kt_total);
    for (size_t s = 0; s < steps.size(); ++s) {
      if (!k_tiled(steps[s])) continue;
      const int64_t n = steps[s].cache->size() + static_cast<int64_t>(steps[s].tokens.size());
      const int64_t n_tiles = (n + kTile - 1) / kTile;
      const KvCache& c = *steps[s].cache;
      float* kt_s = ws.k_tiles_.data() + kt_at[s];
      parallel(n_head_kv * n_tiles, 1, [&](int64_t u0, int64_t u1) {
        for (int64_t u = u0; u < u1; ++u) {
          const int64_t g = u / n_tiles, tile = u % n_tiles;
          float* dst = kt_s + u * hd * kTile;
          for (int64_t j = 0; j < kTile; ++j) {
            const int64_t cell = tile * kTile + j;
            if (cell >= n) {
              for (int64_t d = 0; d < hd; ++d) dst[d * kTile + j] = 0.0f;
              continue;
            }
            const float* kr = reinterpret_cast<const float*>(c.k_at(il, cell)) + g * hd;
            for (int64_t d = 0; d < hd; ++d) dst[d * kTile + j] = kr[d];
          }
        }
      });
    }
    // Work units: up to kHeads heads of one token (F16 rows of one token share their cell count
    // and run in lockstep; enough units are left for every thread when the batch is small).
    constexpr int64_t kHeads = 4;
    const int64_t per_unit = n_tok * n_head >= 16 * ws.n_threads() ? kHeads : 1;
    const int64_t units_per_tok = (n_head + per_unit - 1) / per_unit;
    parallel(n_tok * units_per_tok, 1, [&](int64_t u0, int64_t u1) {
      std::vector<float> scores, ms, vs, qh(static_cast<size_t>(kHeads * hd));
      std::vector<float> acc(static_cast<size_t>(kHeads * hd));
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t t = u / units_per_tok, h0 = (u % units_per_tok) * per_unit;
        const int64_t nh = std::min(per_unit, n_head - h0);
        const size_t si = static_cast<size_t>(tok_seq[static_cast<size_t>(t)]);
        const SequenceStep& step = steps[si];
        KvCache& c = *step.cache;
        const int64_t n_kv = tok_pos[static_cast<size_t>(t)] + 1;
        if (c.type() == KvType::F16) {
          const auto n_cells = static_cast<size_t>(n_kv);
          scores.resize(n_cells);
          ms.resize(n_cells * kHeads);
          vs.resize(n_cells * kHeads);
          tensor::FaRow rows[kHeads];
          float sums[kHeads];
          for (int64_t r = 0; r < nh; ++r) {
            const int64_t h = h0 + r, g = h / group;
            fa_row_factors(q + (t * n_head + h) * hd, c, il, g, n_kv, scale, qh.data() + r * hd,
                           scores.data(), ms.data() + r * n_kv, vs.data() + r * n_kv);
          }
          // The value chains go on from block to block (resume).
          for (int64_t j0 = 0; j0 < n_kv; j0 += kKvBlockTokens) {
            const auto* v16 = reinterpret_cast<const uint16_t*>(c.v_at(il, j0));
            for (int64_t r = 0; r < nh; ++r) {
              const int64_t g = (h0 + r) / group;
              rows[r] = {ms.data() + r * n_kv + j0, vs.data() + r * n_kv + j0, v16 + g * hd,
                         acc.data() + r * hd, sums + r};
            }
            kt.fa_accumulate(rows, static_cast<int>(nh), std::min(kKvBlockTokens, n_kv - j0),
                             static_cast<size_t>(row), hd, j0 > 0);
          }
          for (int64_t r = 0; r < nh; ++r) {
            const float inv = sums[r] == 0.0f ? 0.0f : 1.0f / sums[r];
            float* dst = out + (t * n_head + h0 + r) * hd;
            for (int64_t d = 0; d < hd; ++d) dst[d] = acc[static_cast<size_t>(r * hd + d)] * inv;
          }
          continue;
        }
        for (int64_t h = h0; h < h0 + nh; ++h) {
          const int64_t g = h / group;
          const float* qsrc = q + (t * n_head + h) * hd;
          float* dst = out + (t * n_head + h) * hd;
          // Scores s = sum q[d] * k[d] in order of d (multiply, then add), then scaled: from the
          // transposed K tiles, or gathered from the rows.
          scores.resize(static_cast<size_t>(n_kv));
          if (k_tiled(step)) {
            const int64_t n_tiles =
                (c.size() + static_cast<int64_t>(step.tokens.size()) + kTile - 1) / kTile;
            const float* kt_g = ws.k_tiles_.data() + kt_at[si] + g * n_tiles * hd * kTile;
            for (int64_t c0 = 0; c0 < n_kv; c0 += kTile) {
              const int64_t valid = std::min(kTile, n_kv - c0);
              float* sc = scores.data() + c0;
              std::fill(sc, sc + valid, 0.0f);
              kt.mul_add_rows(hd, valid, qsrc, kt_g + (c0 / kTile) * hd * kTile, kTile, sc);
            }
          } else {
            for (int64_t j0 = 0; j0 < n_kv; j0 += kKvBlockTokens) {
              kt.dot_rows(qsrc, reinterpret_cast<const float*>(c.k_at(il, j0)) + g * hd,
                          static_cast<size_t>(row), std::min(kKvBlockTokens, n_kv - j0), hd,
                          scores.data() + j0);
            }
          }
          float max_s = -INFINITY;
          for (int64_t j = 0; j < n_kv; ++j) {
            scores[static_cast<size_t>(j)] *= scale;
            max_s = std::max(max_s, scores[static_cast<size_t>(j)]);
          }
          double sum = 0.0;
          for (int64_t j = 0; j < n_kv; ++j) {
            const float e = std::exp(scores[static_cast<size_t>(j)] - max_s);
            scores[static_cast<size_t>(j)] = e;
            sum += e;
          }
          const float inv = static_cast<float>(1.0 / sum);
          for (int64_t j = 0; j < n_kv; ++j) scores[static_cast<size_t>(j)] *= inv;
          // acc[d] += p_j * v_j[d] in order of j (multiply, then add).
          float* a = acc.data();
          std::fill(a, a + hd, 0.0f);
          for (int64_t j0 = 0; j0 < n_kv; j0 += kKvBlockTokens) {
            kt.mul_add_rows(std::min(kKvBlockTokens, n_kv - j0), hd, scores.data() + j0,
                            reinterpret_cast<const float*>(c.v_at(il, j0)) + g * hd,
                            static_cast<size_t>(row), a);
          }
          std::copy(a, a + hd, dst);
        }
      }
    });
  }

  Status run() {
    const int64_t E = hp.n_embd, Q = hp.n_embd_q(), KV = hp.n_embd_kv(), F = hp.n_ff;
    auto sz = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
    ws.x_.resize(sz(n_tok, E));
    ws.xn_.resize(sz(n_tok, std::max(E, Q)));
    ws.q_.resize(sz(n_tok, Q));
    ws.k_.resize(sz(n_tok, KV));
    ws.v_.resize(sz(n_tok, KV));
    ws.attn_.resize(sz(n_tok, Q));
    ws.gate_.resize(sz(n_tok, F));
    ws.up_.resize(sz(n_tok, F));

    // Token embeddings.
    const auto* emb = *tensor::type_traits(m.tok_embd_.type);
    {
      int64_t t = 0;
      for (const SequenceStep& s : steps) {
        for (int32_t id : s.tokens) {
          emb->to_float(m.tok_embd_.data + static_cast<size_t>(id) * m.tok_embd_.row_bytes,
                        ws.x_.data() + t * E, E);
          ++t;
        }
      }
    }

    float* x = ws.x_.data();
    float* xn = ws.xn_.data();
    rope_tables();
    for (int64_t il = 0; il < hp.n_layer; ++il) {
      const Model::Layer& l = m.layers_[static_cast<size_t>(il)];
      rms_norm(x, l.attn_norm, xn, n_tok);
      linear({{&l.wq, ws.q_.data()}, {&l.wk, ws.k_.data()}, {&l.wv, ws.v_.data()}}, xn, n_tok);
      add_bias(ws.q_.data(), l.bq);  // no-ops without biases
      add_bias(ws.k_.data(), l.bk);
      add_bias(ws.v_.data(), l.bv);
      rope(ws.q_.data(), hp.n_head);
      rope(ws.k_.data(), hp.n_head_kv);
      store_kv(il, ws.k_.data(), ws.v_.data());
      attention(il, ws.q_.data(), ws.attn_.data());
      linear({{&l.wo, xn}}, ws.attn_.data(), n_tok);
      for (size_t i = 0; i < sz(n_tok, E); ++i) x[i] += xn[i];

      rms_norm(x, l.ffn_norm, xn, n_tok);
      linear({{&l.w_gate, ws.gate_.data()}, {&l.w_up, ws.up_.data()}}, xn, n_tok);
      float* g = ws.gate_.data();
      for (int64_t t = 0; t < n_tok; ++t) kt.swiglu(g + t * F, ws.up_.data() + t * F, F);
      linear({{&l.w_down, xn}}, g, n_tok);
      for (size_t i = 0; i < sz(n_tok, E); ++i) x[i] += xn[i];
      if (err) return *err;
    }

    // Final norm and output projection for the rows that want logits.
    std::vector<int64_t> rows;
    {
      int64_t t = 0;
      for (const SequenceStep& s : steps) {
        const int64_t n = static_cast<int64_t>(s.tokens.size());
        for (int64_t i = s.all_logits ? 0 : n - 1; i < n; ++i) rows.push_back(t + i);
        t += n;
      }
    }
    const int64_t n_out = static_cast<int64_t>(rows.size());
    std::vector<float> sel(sz(n_out, E));
    for (int64_t r = 0; r < n_out; ++r) {
      std::memcpy(sel.data() + r * E, x + rows[static_cast<size_t>(r)] * E, sz(E, 4));
    }
    rms_norm(sel.data(), m.output_norm_, sel.data(), n_out);
    ws.out_rows_.resize(sz(n_out, hp.n_vocab));
    linear({{&m.output_, ws.out_rows_.data()}}, sel.data(), n_out);
    if (err) return *err;
    int64_t r = 0;
    for (const SequenceStep& s : steps) {
      const int64_t n = s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
      std::memcpy(s.logits.data(), ws.out_rows_.data() + r * hp.n_vocab, sz(n * hp.n_vocab, 4));
      r += n;
    }
    return {};
  }

  void add_bias(float* y, const std::vector<float>& b) {
    const int64_t n = static_cast<int64_t>(b.size());
    for (int64_t t = 0; t < n_tok; ++t) {
      for (int64_t i = 0; i < n; ++i) y[t * n + i] += b[static_cast<size_t>(i)];
    }
  }
};

Status Model::forward(std::span<const SequenceStep> steps, Workspace& ws) const {
  auto kernels = tensor::active_kernels();
  if (!kernels) return kernels.take_error();
  if (steps.empty()) return make_error("forward: no sequences in the batch");
  Forward f{*this, ws, **kernels, hp_, steps};
  for (size_t s = 0; s < steps.size(); ++s) {
    const SequenceStep& st = steps[s];
    if (!st.cache || st.tokens.empty())
      return make_error("forward: sequence ", s, " has no tokens");
    for (size_t o = 0; o < s; ++o) {
      if (steps[o].cache == st.cache) {
        return make_error("forward: sequences ", o, " and ", s, " share one KV cache");
      }
    }
    const int64_t n = static_cast<int64_t>(st.tokens.size());
    if (st.cache->size() + n > st.cache->n_ctx()) {
      return make_error("context full: ", st.cache->size(), " tokens in the cache + ", n,
                        " new exceed the context size ", st.cache->n_ctx());
    }
    for (int32_t id : st.tokens) {
      if (id < 0 || id >= hp_.n_vocab) {
        return make_error("token id ", id, " is out of range [0, ", hp_.n_vocab, ")");
      }
    }
    const size_t need = static_cast<size_t>((st.all_logits ? n : 1) * hp_.n_vocab);
    if (st.logits.size() < need) {
      return make_error("forward: logits buffer of ", st.logits.size(), " floats, need ", need);
    }
    if (!st.cache->reserve(st.cache->size() + n)) {
      return make_error(ErrorCode::LIMIT, "forward: the KV pool has no free block for sequence ",
                        s);
    }
    for (int64_t i = 0; i < n; ++i) {
      f.tok_seq.push_back(static_cast<int32_t>(s));
      f.tok_pos.push_back(st.cache->size() + i);
    }
  }
  f.n_tok = static_cast<int64_t>(f.tok_seq.size());
  REALM_TRY(f.run());
  for (const SequenceStep& st : steps) {
    st.cache->size_ += static_cast<int64_t>(st.tokens.size());
  }
  return {};
}

}  // namespace realm::model
