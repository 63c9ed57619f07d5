/* A whole quantized Swin block (edgesr_swin_block_*, see the public header) on one fixed token grid.
 *
 * Why one op: between its six quantized linears and its attention a Swin block has two LayerNorms, a shift,
 * window partition / reverse, GELU and two residual adds. Run as separate graph nodes, each of those is a
 * memory pass plus a framework boundary; here they are folded into the passes that must exist anyway:
 *   LN1 writes its tokens straight to their (shifted) window positions; q, k and v go from each block of the
 *   linears' output rows straight to the attention's codes, in the layout the attention reads; the residual add
 *   scatters the projection back to token order and applies LN2 to each token while it is in cache; fc1's rows
 *   go through GELU to fc2's input codes the same way, so neither q/k/v nor the hidden layer is stored as floats.
 * Example, SwinIR-light on a 64x64 tile: 4096 tokens x 60 channels, 64 windows of 64 tokens, 6 heads of 10.
 *
 * Workspace (floats, T tokens, C channels): A (T x C): windows, later LN2; Q, K (T x C each): proj's and fc2's
 * outputs; H (T x blk_h_floats): the attention's output, later fc2's input codes; then 3 T x C bytes: the codes
 * of q, k, v.
 */
#include "ek_internal.h"
#include "ek_x86_vec.h"

#if defined(__GNUC__) && !defined(__clang__)
/* Contraction only changes the last bit of LayerNorm / GELU arithmetic (compared with a tolerance); codes are
 * decided inside the linear and attention kernels. */
#pragma GCC optimize("fp-contract=fast")
#endif
#if defined(__clang__)
#pragma clang fp contract(fast)
#endif

struct edgesr_swin_block {
  int dim, heads, window, shift, hidden, height, width, bits, tokens, n, windows;
  float eps1, eps2, q_scale;
  float attn_bounds[8];
  float *norm;    /* 4 x dim: norm1 weight, bias, norm2 weight, bias */
  float *bias_t;  /* heads x n x n, transposed per head (what ek_qattention_t takes) */
  float *labels;  /* windows x n region labels of the shifted grid, NULL without shift */
  int32_t *order; /* window-order position -> token index (shift included) */
  edgesr_qlinear *lin[6];
};

enum { LIN_Q, LIN_K, LIN_V, LIN_PROJ, LIN_FC1, LIN_FC2 };

/* ---- element-wise passes, compiled per ISA (the loops over channels vectorise) ---------------------------- */

typedef struct {
  const struct edgesr_swin_block *b;
  const float *x;
  float *out, *dst;
  const float *src;
  size_t count; /* rows (LN, scatter) or elements (GELU, add) */
  int stage;
} blk_ctx;

enum { STAGE_LN1_GATHER, STAGE_SCATTER_ADD_LN2, STAGE_GELU, STAGE_ADD };

#define BLK_LANES 8 /* partial sums: a strict left-to-right float sum is one serial add chain per token */

/* LayerNorm in two halves so that a batch of tokens can share the middle step: the statistics of one row (mean,
 * and the sum of squared deviations), then y = (x - mean) rstd w + bias. The reciprocal square roots of a batch
 * are independent of each other, so they overlap instead of sitting one per row between two dependent chains
 * (a scalar sqrt and divide per token is where a row-at-a-time LayerNorm of 60 channels spends its time). */
EK_INLINE void blk_ln_stats(const float *EK_RESTRICT x, int c, float *mean_out, float *ssd_out) {
  float ps[BLK_LANES] = {0}, pv[BLK_LANES] = {0}, mean = 0.0f, var = 0.0f;
  int i, l;
  for (i = 0; i + BLK_LANES <= c; i += BLK_LANES)
    for (l = 0; l < BLK_LANES; ++l) ps[l] += x[i + l];
  for (; i < c; ++i) mean += x[i];
  for (l = 0; l < BLK_LANES; ++l) mean += ps[l];
  mean /= (float)c;
  for (i = 0; i + BLK_LANES <= c; i += BLK_LANES)
    for (l = 0; l < BLK_LANES; ++l) {
      const float d = x[i + l] - mean;
      pv[l] += d * d;
    }
  for (; i < c; ++i) {
    const float d = x[i] - mean;
    var += d * d;
  }
  for (l = 0; l < BLK_LANES; ++l) var += pv[l];
  *mean_out = mean;
  *ssd_out = var;
}

EK_INLINE void blk_ln_apply(const float *EK_RESTRICT x, int c, float mean, float rstd, const float *EK_RESTRICT w,
                            const float *EK_RESTRICT bias, float *EK_RESTRICT y) {
  int i;
  for (i = 0; i < c; ++i) y[i] = (x[i] - mean) * rstd * w[i] + bias[i];
}

#define BLK_LN_BATCH 16

/* rstd of a batch from the sums of squared deviations (in place). */
EK_INLINE void blk_ln_rstd(float *v, int count, int c, float eps) {
  int t;
  for (t = 0; t < count; ++t) v[t] = 1.0f / sqrtf(v[t] / (float)c + eps);
}

/* GELU(x) = x/2 (1 + erf(x / sqrt 2)); erf by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7). */
EK_INLINE float blk_gelu(float x) {
  const float z = x * 0.70710678f, a = z < 0.0f ? -z : z;
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  float p = 1.061405429f;
  float e;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  e = 1.0f - p * t * ek_exp_approx(-a * a);
  return 0.5f * x * (1.0f + (z < 0.0f ? -e : e));
}

EK_INLINE void blk_stage_body(const blk_ctx *c, size_t i0, size_t i1) {
  const struct edgesr_swin_block *b = c->b;
  const int dim = b->dim;
  size_t i;
  switch (c->stage) {
  case STAGE_LN1_GATHER:
    for (i = i0; i < i1; i += BLK_LN_BATCH) {
      const int cnt = i1 - i < BLK_LN_BATCH ? (int)(i1 - i) : BLK_LN_BATCH;
      float mean[BLK_LN_BATCH], rstd[BLK_LN_BATCH];
      int t;
      for (t = 0; t < cnt; ++t) blk_ln_stats(c->x + (size_t)b->order[i + t] * dim, dim, &mean[t], &rstd[t]);
      blk_ln_rstd(rstd, cnt, dim, b->eps1);
      for (t = 0; t < cnt; ++t)
        blk_ln_apply(c->x + (size_t)b->order[i + t] * dim, dim, mean[t], rstd[t], b->norm, b->norm + dim,
                     c->dst + (i + t) * dim);
    }
    break;
  case STAGE_SCATTER_ADD_LN2: /* residual back in token order, and LN2 of the tokens while they are in L1 */
    for (i = i0; i < i1; i += BLK_LN_BATCH) {
      const int cnt = i1 - i < BLK_LN_BATCH ? (int)(i1 - i) : BLK_LN_BATCH;
      float mean[BLK_LN_BATCH], rstd[BLK_LN_BATCH];
      int t, k;
      for (t = 0; t < cnt; ++t) {
        const size_t tok = (size_t)b->order[i + t] * dim;
        const float *x = c->x + tok, *p = c->src + (i + t) * dim;
        float *o = c->out + tok;
        for (k = 0; k < dim; ++k) o[k] = x[k] + p[k];
        blk_ln_stats(o, dim, &mean[t], &rstd[t]);
      }
      blk_ln_rstd(rstd, cnt, dim, b->eps2);
      for (t = 0; t < cnt; ++t) {
        const size_t tok = (size_t)b->order[i + t] * dim;
        blk_ln_apply(c->out + tok, dim, mean[t], rstd[t], b->norm + 2 * dim, b->norm + 3 * dim, c->dst + tok);
      }
    }
    break;
  case STAGE_GELU: {
    float *EK_RESTRICT d = c->dst;
    for (i = i0; i < i1; ++i) d[i] = blk_gelu(d[i]);
    break;
  }
  default: { /* STAGE_ADD */
    float *EK_RESTRICT o = c->out;
    const float *EK_RESTRICT s = c->src;
    for (i = i0; i < i1; ++i) o[i] += s[i];
    break;
  }
  }
}

static void blk_stage_generic(const blk_ctx *c, size_t i0, size_t i1) { blk_stage_body(c, i0, i1); }

#if defined(EK_X86) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"))) static void blk_stage_avx512(const blk_ctx *c,
                                                                                                size_t i0,
                                                                                                size_t i1) {
  blk_stage_body(c, i0, i1);
}
/* blk_gelu on 8 lanes (GCC leaves the AVX2 copy of the GELU loop scalar). */
__attribute__((target("avx2,fma"))) static inline __m256 blk_gelu8(__m256 x) {
  const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678f)), one = _mm256_set1_ps(1.0f);
  const __m256 neg = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ);
  const __m256 a = _mm256_blendv_ps(z, _mm256_sub_ps(_mm256_setzero_ps(), z), neg);
  const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, one));
  __m256 p = _mm256_set1_ps(1.061405429f), e;
  p = _mm256_fmsub_ps(p, t, _mm256_set1_ps(1.453152027f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
  p = _mm256_fmsub_ps(p, t, _mm256_set1_ps(0.284496736f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
  e = _mm256_fnmadd_ps(_mm256_mul_ps(p, t), ek_exp8_avx2(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a))), one);
  e = _mm256_blendv_ps(e, _mm256_sub_ps(_mm256_setzero_ps(), e), neg);
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(one, e));
}

__attribute__((target("avx2,fma"))) static void blk_stage_avx2(const blk_ctx *c, size_t i0, size_t i1) {
  if (c->stage == STAGE_GELU) {
    float *d = c->dst;
    for (; i0 + 8 <= i1; i0 += 8) _mm256_storeu_ps(d + i0, blk_gelu8(_mm256_loadu_ps(d + i0)));
  }
  blk_stage_body(c, i0, i1); /* the rest (and every other stage) */
}
#endif

/* Stage c over [i0, i1) on the active ISA's copy. */
static void blk_stage_range(const blk_ctx *c, size_t i0, size_t i1) {
#if defined(EK_X86) && (defined(__GNUC__) || defined(__clang__))
  const int isa = edgesr_active_isa();
  if (isa == EDGESR_ISA_AVX512_VNNI) {
    blk_stage_avx512(c, i0, i1);
    return;
  }
  if (isa == EDGESR_ISA_AVX2) {
    blk_stage_avx2(c, i0, i1);
    return;
  }
#endif
  blk_stage_generic(c, i0, i1);
}

static void blk_task(void *ctx, int tid, int nt) {
  const blk_ctx *c = (const blk_ctx *)ctx;
  blk_stage_range(c, c->count * (size_t)tid / (size_t)nt, c->count * (size_t)(tid + 1) / (size_t)nt);
}

/* ---- row-block hooks of the linears (fusions: the rows are still in cache) ----------------------------------- */

typedef struct {
  const struct edgesr_swin_block *b;
  uint8_t *codes;     /* q/k/v: the attention's codes (tokens x dim); fc1: fc2's input codes (tokens x kp) */
  int32_t *rowsum;    /* fc1: their row sums */
  float lower, upper; /* q/k/v: the attention quantizer's bounds */
  int scale_q;        /* q: times q_scale first */
} blk_hook;

/* q, k or v rows -> the attention's codes (q times its scale first, as the attention takes it). */
static void blk_hook_attn_codes(void *arg, float *y, int row0, int rows) {
  const blk_hook *h = (const blk_hook *)arg;
  const int dim = h->b->dim;
  const size_t count = (size_t)rows * dim;
  size_t i;
  if (h->scale_q)
    for (i = 0; i < count; ++i) y[i] *= h->b->q_scale;
  edgesr_quantize_codes(y, count, h->lower, h->upper, h->b->bits, h->codes + (size_t)row0 * dim);
}

/* fc1 rows -> GELU -> fc2's input codes and row sums. */
static void blk_hook_gelu_codes(void *arg, float *y, int row0, int rows) {
  const blk_hook *h = (const blk_hook *)arg;
  const edgesr_qlinear *fc2 = h->b->lin[LIN_FC2];
  blk_ctx c;
  memset(&c, 0, sizeof c);
  c.b = h->b;
  c.dst = y;
  c.stage = STAGE_GELU;
  blk_stage_range(&c, 0, (size_t)rows * h->b->hidden);
  ek_qlinear_quantize_input(fc2, y, rows, h->codes + (size_t)row0 * ek_qlinear_padded_k(fc2), h->rowsum + row0);
}

static void blk_stage(const struct edgesr_swin_block *b, int stage, const float *x, float *out, float *dst,
                      const float *src, size_t count, int threads) {
  blk_ctx c;
  c.b = b;
  c.x = x;
  c.out = out;
  c.dst = dst;
  c.src = src;
  c.count = count;
  c.stage = stage;
  ek_parallel(threads, blk_task, &c);
}

/* ---- creation --------------------------------------------------------------------------------------------- */

/* SwinIR's shifted-window regions: rows [0, H - ws), [H - ws, H - shift), [H - shift, H) (same for columns)
 * of the shifted grid, label = 3 * row region + column region. */
static int blk_region(int r, int size, int ws, int shift) { return r < size - ws ? 0 : r < size - shift ? 1 : 2; }

static int blk_prepare_grid(struct edgesr_swin_block *b) {
  const int ws = b->window, nww = b->width / ws;
  int p;
  b->order = (int32_t *)malloc(sizeof(int32_t) * (size_t)b->tokens);
  if (b->shift) b->labels = (float *)malloc(sizeof(float) * (size_t)b->tokens);
  if (!b->order || (b->shift && !b->labels)) return -1;
  for (p = 0; p < b->tokens; ++p) {
    const int win = p / b->n, t = p % b->n;
    const int r = (win / nww) * ws + t / ws, col = (win % nww) * ws + t % ws; /* shifted grid */
    /* The shifted grid's (r, col) holds token ((r + shift) mod H, (col + shift) mod W). */
    b->order[p] = ((r + b->shift) % b->height) * b->width + (col + b->shift) % b->width;
    if (b->labels)
      b->labels[p] = (float)(3 * blk_region(r, b->height, ws, b->shift) + blk_region(col, b->width, ws, b->shift));
  }
  return 0;
}

/* bias_t[h][j][i] = table[index(i, j)][h], index(i, j) = (dy + ws - 1) (2 ws - 1) + dx + ws - 1 for token i at
 * (yi, xi) and j at (yj, xj), dy = yi - yj, dx = xi - xj. */
static int blk_prepare_bias(struct edgesr_swin_block *b, const float *table) {
  const int ws = b->window, n = b->n, heads = b->heads;
  int h, i, j;
  b->bias_t = (float *)malloc(sizeof(float) * (size_t)heads * n * n);
  if (!b->bias_t) return -1;
  for (i = 0; i < n; ++i)
    for (j = 0; j < n; ++j) {
      const int dy = i / ws - j / ws, dx = i % ws - j % ws;
      const int idx = (dy + ws - 1) * (2 * ws - 1) + dx + ws - 1;
      for (h = 0; h < heads; ++h) b->bias_t[((size_t)h * n + j) * n + i] = table[(size_t)idx * heads + h];
    }
  return 0;
}

edgesr_swin_block *edgesr_swin_block_create(const edgesr_swin_block_desc *d) {
  struct edgesr_swin_block *b;
  int i;
  if (!d || d->dim < 1 || d->heads < 1 || d->dim % d->heads || d->window < 1 || d->shift < 0 ||
      d->shift >= d->window || d->hidden < 1 || d->height < 1 || d->width < 1 || d->height % d->window ||
      d->width % d->window || d->bits < 1 || d->bits > 8 || !d->norm1_weight || !d->norm1_bias ||
      !d->norm2_weight || !d->norm2_bias || !d->bias_table || d->window * d->window > 256 ||
      d->dim / d->heads > 64)
    return NULL;
  for (i = 0; i < 6; ++i)
    if (!d->weight_packed[i]) return NULL;
  for (i = 0; i < 4; ++i)
    if (!ek_make_qparams(d->attn_bounds[2 * i], d->attn_bounds[2 * i + 1], d->bits).valid) return NULL;
  b = (struct edgesr_swin_block *)calloc(1, sizeof *b);
  if (!b) return NULL;
  b->dim = d->dim;
  b->heads = d->heads;
  b->window = d->window;
  b->shift = d->shift;
  b->hidden = d->hidden;
  b->height = d->height;
  b->width = d->width;
  b->bits = d->bits;
  b->n = d->window * d->window;
  b->tokens = d->height * d->width;
  b->windows = b->tokens / b->n;
  b->eps1 = d->eps1;
  b->eps2 = d->eps2;
  b->q_scale = d->q_scale;
  memcpy(b->attn_bounds, d->attn_bounds, sizeof b->attn_bounds);
  b->norm = (float *)malloc(sizeof(float) * 4 * (size_t)d->dim);
  if (!b->norm || blk_prepare_grid(b) || blk_prepare_bias(b, d->bias_table)) goto fail;
  memcpy(b->norm, d->norm1_weight, sizeof(float) * d->dim);
  memcpy(b->norm + d->dim, d->norm1_bias, sizeof(float) * d->dim);
  memcpy(b->norm + 2 * d->dim, d->norm2_weight, sizeof(float) * d->dim);
  memcpy(b->norm + 3 * d->dim, d->norm2_bias, sizeof(float) * d->dim);
  for (i = 0; i < 6; ++i) {
    const int n = i == LIN_FC1 ? d->hidden : d->dim, k = i == LIN_FC2 ? d->hidden : d->dim;
    b->lin[i] = edgesr_qlinear_create(n, k, d->bits, d->weight_packed[i], d->w_bounds[i][0], d->w_bounds[i][1],
                                      d->x_bounds[i][0], d->x_bounds[i][1], d->bias[i]);
    if (!b->lin[i]) goto fail;
  }
  return b;
fail:
  edgesr_swin_block_destroy(b);
  return NULL;
}

void edgesr_swin_block_destroy(edgesr_swin_block *b) {
  int i;
  if (!b) return;
  for (i = 0; i < 6; ++i) edgesr_qlinear_destroy(b->lin[i]);
  free(b->norm);
  free(b->bias_t);
  free(b->labels);
  free(b->order);
  free(b);
}

void edgesr_swin_block_shape(const edgesr_swin_block *b, int *tokens, int *dim) {
  if (tokens) *tokens = b ? b->tokens : 0;
  if (dim) *dim = b ? b->dim : 0;
}

int edgesr_swin_block_window(const edgesr_swin_block *b) { return b ? b->window : 0; }

/* Floats per token of H: the attention's output (dim), later fc2's input codes (padded K bytes) and their sum. */
static size_t blk_h_floats(const edgesr_swin_block *b) {
  return (size_t)ek_max(b->dim, (ek_qlinear_padded_k(b->lin[LIN_FC2]) + 3) / 4 + 1);
}

/* fc2's input codes (tokens x padded K bytes) at the start of H, their row sums right after: what blk_h_floats
 * sizes. */
static void blk_fc2_input(const edgesr_swin_block *b, float *H, uint8_t **codes, int32_t **rowsum) {
  *codes = (uint8_t *)H;
  *rowsum = (int32_t *)(void *)(H + ((size_t)b->tokens * ek_qlinear_padded_k(b->lin[LIN_FC2]) + 3) / 4);
}

size_t edgesr_swin_block_workspace_floats(const edgesr_swin_block *b) {
  if (!b) return 0;
  /* + 16 floats: the attention's tile transposes read up to 15 bytes past the last code. */
  return (size_t)b->tokens * (3 * (size_t)b->dim + blk_h_floats(b)) + ((size_t)b->tokens * b->dim * 3 + 3) / 4 + 16;
}

/* ---- run -------------------------------------------------------------------------------------------------- */

int edgesr_swin_block_run(const edgesr_swin_block *b, const float *x, float *out, float *workspace, int threads) {
  size_t tc;
  float *own = NULL, *A, *Q, *K, *H;
  uint8_t *codes;
  const uint8_t *code_ptrs[3];
  blk_hook hook;
  int nt, rc, i;
  if (!b || !x || !out) return -1;
  tc = (size_t)b->tokens * b->dim;
  if (!workspace) {
    own = (float *)malloc(sizeof(float) * edgesr_swin_block_workspace_floats(b));
    if (!own) return -1;
    workspace = own;
  }
  nt = ek_clamp_threads(threads);
  A = workspace;
  Q = A + tc;
  K = Q + tc;
  H = K + tc;
  codes = (uint8_t *)(H + (size_t)b->tokens * blk_h_floats(b));
  /* Attention half: LN1 into shifted windows; q/k/v, each straight to the attention's codes; attention; proj;
   * back to tokens with the residual. */
  memset(&hook, 0, sizeof hook);
  hook.b = b;
  blk_stage(b, STAGE_LN1_GATHER, x, NULL, A, NULL, (size_t)b->tokens, nt);
  for (i = 0; i < 3; ++i) {
    const float *ab = b->attn_bounds + (i == 0 ? 0 : i == 1 ? 2 : 6); /* bounds: q, k, map, v */
    hook.codes = codes + (size_t)i * tc;
    hook.lower = ab[0];
    hook.upper = ab[1];
    hook.scale_q = i == 0;
    ek_qlinear_run_ex(b->lin[LIN_Q + i], A, NULL, NULL, b->tokens, NULL, blk_hook_attn_codes, &hook, nt);
  }
  code_ptrs[0] = codes;
  code_ptrs[1] = codes + tc;
  code_ptrs[2] = codes + 2 * tc;
  rc = ek_qattention_t(NULL, NULL, NULL, b->windows, b->heads, b->n, b->dim / b->heads, 1, code_ptrs, b->bias_t,
                       NULL, b->labels, b->windows, b->attn_bounds, b->bits, H, nt);
  if (rc == 0) {
    edgesr_qlinear_run(b->lin[LIN_PROJ], H, b->tokens, Q, nt);
    blk_stage(b, STAGE_SCATTER_ADD_LN2, x, out, A, Q, (size_t)b->tokens, nt);
    /* MLP half: fc1's rows go through GELU to fc2's input codes (in H) while in cache, then fc2 from codes. */
    blk_fc2_input(b, H, &hook.codes, &hook.rowsum);
    hook.scale_q = 0;
    ek_qlinear_run_ex(b->lin[LIN_FC1], A, NULL, NULL, b->tokens, NULL, blk_hook_gelu_codes, &hook, nt);
    ek_qlinear_run_ex(b->lin[LIN_FC2], NULL, hook.codes, hook.rowsum, b->tokens, K, NULL, NULL, nt);
    blk_stage(b, STAGE_ADD, NULL, out, NULL, K, tc, nt);
  }
  free(own);
  return rc;
}
