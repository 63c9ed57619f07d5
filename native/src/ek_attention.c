/* Fused 2DQuant window attention: out = Q(softmax(Q(q)·Q(k)ᵀ + bias + mask)) · Q(v), Q = per-tensor quantizer.
 *
 * One (window, head) pair at a time, entirely in L1: the n x n attention map never goes to memory, which is
 * where the unfused graph spends its time (Q·Kᵀ with hd = 10 writes 16x more than it reads).
 * Codes are carried as floats: products of codes summed over hd (or n) stay below 2^24, so the float sums are
 * the exact integer accumulators (tests compare them with an integer reference), and every loop vectorises on
 * any ISA. The body is compiled twice on x86-64 (baseline and AVX-512 via target attributes) and once on ARM.
 *
 * Example, SwinIR-light 64x64 tile: 64 windows x 6 heads = 384 tasks of n = 64 tokens, hd = 10.
 */
#include "ek_internal.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* 64-byte vectors stay inside always-inline helpers */
/* Fused multiply-add is exact for the code products (integers below 2^24) and only changes the last bit of the
 * float epilogues, which are compared with a tolerance anyway; the library default (no contraction) exists
 * for the quantizers, which this file does not share. */
#pragma GCC optimize("fp-contract=fast")
#endif
#if defined(__clang__)
#pragma clang fp contract(fast)
#endif

#define EK_ATT_MAX_N 256
#define EK_ATT_MAX_HD 64

typedef struct {
  const float *q, *k, *v, *bias, *mask;
  const float *labels; /* instead of mask: (mask_windows, n) region labels, -100 where two tokens' labels differ */
  const uint8_t *qc, *kc, *vc; /* codes of q, k, v computed beforehand (same layout), or NULL */
  float *out;
  float *scratch; /* per thread: scratch_floats floats */
  size_t scratch_floats;
  int groups, heads, n, hd, mask_windows;
  int token_major; /* q, k, v, out as (groups, n, heads * hd) instead of (groups * heads, n, hd) */
  ek_qparams qq, kq, aq, vq;
} att_ctx;

#define LANES 16 /* reductions keep LANES partial results so every loop vectorises without reassociation */

static inline float att_code(float v, float lo, float hi, float step) {
  float t = v > lo ? v : lo;
  t = t < hi ? t : hi;
  t = (t - lo) / step;
  return (t + EK_RNE_MAGIC) - EK_RNE_MAGIC;
}

/* Codes (as floats) of len contiguous values. */
static inline void att_codes(const float *x, int len, const ek_qparams *p, float *out) {
  const float lo = p->lo, hi = p->hi, step = p->step;
  int i;
  for (i = 0; i < len; ++i) out[i] = att_code(x[i], lo, hi, step);
}

/* Codes of an n x hd block whose rows are ld floats apart, stored row-major (n x hd). */
static inline void att_codes_rows(const float *x, int n, int hd, int ld, const ek_qparams *p, float *out) {
  int i;
  if (ld == hd) {
    att_codes(x, n * hd, p, out);
    return;
  }
  for (i = 0; i < n; ++i) att_codes(x + (size_t)i * ld, hd, p, out + i * hd);
}

/* Codes given as bytes: rows ld apart -> floats row-major (n x hd), or transposed (hd x n). */
static inline void att_u8_rows(const uint8_t *x, int n, int hd, int ld, float *out) {
  int i, d;
  for (i = 0; i < n; ++i)
    for (d = 0; d < hd; ++d) out[i * hd + d] = (float)x[(size_t)i * ld + d];
}

static inline void att_u8_t(const uint8_t *x, int n, int hd, int ld, float *out) {
  int i, d;
  for (i = 0; i < n; ++i)
    for (d = 0; d < hd; ++d) out[d * n + i] = (float)x[(size_t)i * ld + d];
}

/* The same, stored transposed (hd x n); tmp holds n * hd floats. */
static inline void att_codes_t(const float *x, int n, int hd, int ld, const ek_qparams *p, float *tmp,
                               float *out) {
  int i, d;
  att_codes_rows(x, n, hd, ld, p, tmp);
  for (i = 0; i < n; ++i)
    for (d = 0; d < hd; ++d) out[d * n + i] = tmp[i * hd + d];
}

static inline float att_sum(const float *x, int len) {
  float part[LANES] = {0}, s = 0.0f;
  int j = 0, l;
  for (; j + LANES <= len; j += LANES)
    for (l = 0; l < LANES; ++l) part[l] += x[j + l];
  for (l = 0; l < LANES; ++l) s += part[l];
  for (; j < len; ++j) s += x[j];
  return s;
}

static inline float att_max(const float *x, int len) {
  float part[LANES], m = -INFINITY;
  int j = 0, l;
  for (l = 0; l < LANES; ++l) part[l] = -INFINITY;
  for (; j + LANES <= len; j += LANES)
    for (l = 0; l < LANES; ++l) part[l] = x[j + l] > part[l] ? x[j + l] : part[l];
  for (l = 0; l < LANES; ++l) m = part[l] > m ? part[l] : m;
  for (; j < len; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

#if defined(__GNUC__) || defined(__clang__)
#define EK_ATT_V64 1
/* 64 tokens = four 16-float vectors held in registers (GCC/Clang vector extensions lower them to AVX-512,
 * AVX2 or NEON). Window 8 (n = 64), SwinIR-light's case, takes this path; other sizes use the plain loops. */
typedef float ek_v16 __attribute__((vector_size(64), aligned(4)));

static inline __attribute__((always_inline)) ek_v16 v16_load(const float *p) {
  ek_v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline __attribute__((always_inline)) void v16_store(float *p, ek_v16 v) { memcpy(p, &v, sizeof v); }

/* out[0..63] = sum_i s[i] * x[i * 64 .. i * 64 + 63] over len terms, in four register vectors
 * (exact: integer-valued floats). */
static inline __attribute__((always_inline)) void axpy_sum64(const float *s, const float *x, int len, float *out) {
  ek_v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
  int i;
  for (i = 0; i < len; ++i) {
    const float c = s[i];
    const float *xi = x + i * 64;
    a0 += c * v16_load(xi);
    a1 += c * v16_load(xi + 16);
    a2 += c * v16_load(xi + 32);
    a3 += c * v16_load(xi + 48);
  }
  v16_store(out, a0);
  v16_store(out + 16, a1);
  v16_store(out + 32, a2);
  v16_store(out + 48, a3);
}
#endif

/* The map is built transposed: row j of sT holds logits (i = 0..n-1, j) for all query tokens i. Softmax over j
 * then runs down the columns, so max, sum and the map's codes are element-wise vector ops over i, and attn·V
 * reads sT rows as they are (no transpose of the map). bias_t / mask_t are the bias and mask transposed. */
static inline __attribute__((always_inline)) void att_range(const att_ctx *c, long long t0, long long t1,
                                                            float *scratch, int v64, const int n_fixed,
                                                            const int hd_fixed) {
  /* n_fixed / hd_fixed: compile-time sizes of a specialised copy (0: read them from c), so the loops over
   * tokens have known trip counts and no tails. */
  const int n = n_fixed ? n_fixed : c->n, hd = hd_fixed ? hd_fixed : c->hd, nh = n * hd;
  float *EK_RESTRICT cqt = scratch, *EK_RESTRICT ck = cqt + nh, *EK_RESTRICT cvt = ck + nh;
  float *EK_RESTRICT acc = cvt + nh, *EK_RESTRICT tmp = acc + nh, *EK_RESTRICT st = tmp + nh;
  float *EK_RESTRICT rq = st + n * n, *EK_RESTRICT ra = rq + n, *EK_RESTRICT mx = ra + n;
  float *EK_RESTRICT sm = mx + n, *EK_RESTRICT cv_sum = sm + n;
  const float a_qk = c->qq.step * c->kq.step, b_qk = c->qq.step * c->kq.lo, c_qk = c->qq.lo * c->kq.step;
  const float d_qk = (float)hd * c->qq.lo * c->kq.lo;
  const float a_av = c->aq.step * c->vq.step, b_av = c->aq.step * c->vq.lo, c_av = c->aq.lo * c->vq.step;
  const float d_av = (float)n * c->aq.lo * c->vq.lo;
  const float alo = c->aq.lo, ahi = c->aq.hi, arstep = 1.0f / c->aq.step;
  long long t;
  int i, j, d;
  for (t = t0; t < t1; ++t) {
    const int g = (int)(t / c->heads), h = (int)(t % c->heads);
    const int ld = c->token_major ? c->heads * hd : hd;
    const size_t off = c->token_major ? (size_t)g * n * ld + (size_t)h * hd : (size_t)t * nh;
    const float *bias_t = c->bias + (size_t)h * n * n;
    const float *mask_t = c->mask ? c->mask + (size_t)(g % c->mask_windows) * n * n : NULL;
    const float *lab = c->labels ? c->labels + (size_t)(g % c->mask_windows) * n : NULL;
    float *out = c->out + off;
    /* Codes: k row-major (n x hd), q and v transposed (hd x n) so the vector loops run over tokens. */
    if (c->qc) {
      att_u8_t(c->qc + off, n, hd, ld, cqt);
      att_u8_rows(c->kc + off, n, hd, ld, ck);
      att_u8_t(c->vc + off, n, hd, ld, cvt);
    } else {
      att_codes_t(c->q + off, n, hd, ld, &c->qq, tmp, cqt);
      att_codes_rows(c->k + off, n, hd, ld, &c->kq, ck);
      att_codes_t(c->v + off, n, hd, ld, &c->vq, tmp, cvt);
    }
    for (i = 0; i < n; ++i) rq[i] = 0.0f;
    for (d = 0; d < hd; ++d)
      for (i = 0; i < n; ++i) rq[i] += cqt[d * n + i];
    for (i = 0; i < n; ++i) {
      rq[i] = b_qk * rq[i] + d_qk;
      mx[i] = -INFINITY;
      sm[i] = 0.0f;
      ra[i] = 0.0f;
    }
    for (d = 0; d < hd; ++d) cv_sum[d] = att_sum(cvt + d * n, n);
    for (j = 0; j < n; ++j) {
      float *sj = st + (size_t)j * n;
      const float *bj = bias_t + (size_t)j * n;
      const float cj = c_qk * att_sum(ck + j * hd, hd);
#ifdef EK_ATT_V64
      if (v64 && n == 64) {
        axpy_sum64(ck + j * hd, cqt, hd, sj); /* sj[i] = sum_d ck[j][d] cq[i][d] */
      } else
#endif
      {
        for (i = 0; i < n; ++i) sj[i] = 0.0f;
        for (d = 0; d < hd; ++d) {
          const float a = ck[j * hd + d];
          const float *qd = cqt + d * n;
          for (i = 0; i < n; ++i) sj[i] += a * qd[i];
        }
      }
      for (i = 0; i < n; ++i) sj[i] = a_qk * sj[i] + (rq[i] + cj) + bj[i];
      if (mask_t) {
        const float *mj = mask_t + (size_t)j * n;
        for (i = 0; i < n; ++i) sj[i] += mj[i];
      } else if (lab) {
        const float lj = lab[j];
        for (i = 0; i < n; ++i) sj[i] += lab[i] == lj ? 0.0f : -100.0f;
      }
      for (i = 0; i < n; ++i) mx[i] = sj[i] > mx[i] ? sj[i] : mx[i];
    }
    for (j = 0; j < n; ++j) {
      float *sj = st + (size_t)j * n;
      for (i = 0; i < n; ++i) {
        const float e = ek_exp_approx(sj[i] - mx[i]);
        sj[i] = e;
        sm[i] += e;
      }
    }
    /* The map's codes use reciprocal multiplies (one division per query, not one per element): the
     * probabilities themselves are only as exact as the exp, so true division buys nothing here. */
    for (i = 0; i < n; ++i) sm[i] = 1.0f / sm[i];
    for (j = 0; j < n; ++j) {
      float *sj = st + (size_t)j * n;
      for (i = 0; i < n; ++i) {
        float p = sj[i] * sm[i];
        p = p > alo ? p : alo;
        p = (p < ahi ? p : ahi) - alo;
        p = (p * arstep + EK_RNE_MAGIC) - EK_RNE_MAGIC;
        sj[i] = p;
        ra[i] += p;
      }
    }
#ifdef EK_ATT_V64
    if (v64 && n == 64) {
      for (d = 0; d < hd; ++d) axpy_sum64(cvt + d * 64, st, 64, acc + d * 64); /* sum_j cv[j][d] ca[.][j] */
    } else
#endif
      for (d = 0; d < hd; ++d) {
        float *ad = acc + d * n;
        const float *vd = cvt + d * n;
        for (i = 0; i < n; ++i) ad[i] = 0.0f;
        for (j = 0; j < n; ++j) {
          const float b = vd[j];
          const float *sj = st + (size_t)j * n;
          for (i = 0; i < n; ++i) ad[i] += b * sj[i];
        }
      }
    for (i = 0; i < n; ++i)
      for (d = 0; d < hd; ++d)
        out[(size_t)i * ld + d] = a_av * acc[d * n + i] + (b_av * ra[i] + c_av * cv_sum[d] + d_av);
  }
}

/* The 64-float vector path needs 16 registers of 16 bytes (NEON) or 4 of 64 (AVX-512); x86 without AVX-512
 * would spill them, so it takes the plain loops. Each path has a copy specialised for SwinIR-light's window
 * (n = 64 tokens, hd = 10) and a general one. */
#define ATT_DISPATCH(c, t0, t1, scratch, v64)                                              \
  do {                                                                                     \
    if ((c)->n == 64 && (c)->hd == 10)                                                     \
      att_range(c, t0, t1, scratch, v64, 64, 10);                                          \
    else if ((c)->n == 64)                                                                 \
      att_range(c, t0, t1, scratch, v64, 64, 0);                                           \
    else                                                                                   \
      att_range(c, t0, t1, scratch, v64, 0, 0);                                            \
  } while (0)

static void att_range_generic(const att_ctx *c, long long t0, long long t1, float *scratch) {
#ifdef EK_ARM64
  ATT_DISPATCH(c, t0, t1, scratch, 1);
#else
  ATT_DISPATCH(c, t0, t1, scratch, 0);
#endif
}

#if defined(EK_X86) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"))) static void att_range_avx512(
    const att_ctx *c, long long t0, long long t1, float *scratch) {
  ATT_DISPATCH(c, t0, t1, scratch, 1);
}
__attribute__((target("avx2,fma"))) static void att_range_avx2(const att_ctx *c, long long t0, long long t1,
                                                               float *scratch) {
  ATT_DISPATCH(c, t0, t1, scratch, 0);
}
#endif

static void att_task(void *ctx, int tid, int nt) {
  const att_ctx *c = (const att_ctx *)ctx;
  long long total = (long long)c->groups * c->heads;
  long long t0 = total * tid / nt, t1 = total * (tid + 1) / nt;
  float *scratch = c->scratch + (size_t)tid * c->scratch_floats;
#if defined(EK_X86) && (defined(__GNUC__) || defined(__clang__))
  int isa = edgesr_active_isa();
  if (isa == EDGESR_ISA_AVX512_VNNI)
    att_range_avx512(c, t0, t1, scratch);
  else if (isa == EDGESR_ISA_AVX2)
    att_range_avx2(c, t0, t1, scratch);
  else
#endif
    att_range_generic(c, t0, t1, scratch);
}

/* n x n blocks, each transposed into dst. */
static void att_transpose_blocks(const float *src, int blocks, int n, float *dst) {
  int b, i, j;
  for (b = 0; b < blocks; ++b) {
    const float *s = src + (size_t)b * n * n;
    float *o = dst + (size_t)b * n * n;
    for (i = 0; i < n; ++i)
      for (j = 0; j < n; ++j) o[(size_t)j * n + i] = s[(size_t)i * n + j];
  }
}

int ek_qattention_t(const float *q, const float *k, const float *v, int groups, int heads, int n, int hd,
                    int token_major, const uint8_t *const codes[3], const float *bias_t, const float *mask_t,
                    const float *labels, int mask_windows, const float bounds[8], int bits, float *out,
                    int threads) {
  att_ctx c;
  long long total;
  int nt;
  if (codes && (!codes[0] || !codes[1] || !codes[2])) return -1;
  if (!codes && (!q || !k || !v)) return -1;
  if (!bias_t || !bounds || !out || bits < 1 || bits > 8 || groups < 1 || heads < 1 || n < 1 || n > EK_ATT_MAX_N ||
      hd < 1 || hd > EK_ATT_MAX_HD || ((mask_t || labels) && mask_windows < 1))
    return -1;
  c.q = q;
  c.k = k;
  c.v = v;
  c.bias = bias_t;
  c.mask = mask_t;
  c.labels = mask_t ? NULL : labels;
  c.qc = codes ? codes[0] : NULL;
  c.kc = codes ? codes[1] : NULL;
  c.vc = codes ? codes[2] : NULL;
  c.token_major = token_major;
  c.out = out;
  c.groups = groups;
  c.heads = heads;
  c.n = n;
  c.hd = hd;
  c.mask_windows = mask_t || labels ? mask_windows : 1;
  c.qq = ek_make_qparams(bounds[0], bounds[1], bits);
  c.kq = ek_make_qparams(bounds[2], bounds[3], bits);
  c.aq = ek_make_qparams(bounds[4], bounds[5], bits);
  c.vq = ek_make_qparams(bounds[6], bounds[7], bits);
  if (!c.qq.valid || !c.kq.valid || !c.aq.valid || !c.vq.valid) return -1;
  total = (long long)groups * heads;
  nt = ek_clamp_threads(threads);
  if (nt > total) nt = (int)total;
  /* Per-thread working set (n = 64, hd = 10: 30 KB): 5 code/accumulator blocks of n x hd, the n x n map. */
  c.scratch_floats = 5 * (size_t)n * hd + (size_t)n * n + 5 * (size_t)n + (size_t)hd + 16;
  c.scratch = (float *)malloc((size_t)nt * c.scratch_floats * sizeof(float));
  if (!c.scratch) return -1;
  ek_parallel(nt, att_task, &c);
  free(c.scratch);
  return 0;
}

int edgesr_qattention(const float *q, const float *k, const float *v, int groups, int heads, int n, int hd,
                      const float *bias, const float *mask, int mask_windows, const float bounds[8], int bits,
                      float *out, int threads) {
  float *bias_t, *mask_t = NULL;
  int rc;
  if (!bias || n < 1 || n > EK_ATT_MAX_N || heads < 1 || (mask && mask_windows < 1)) return -1;
  bias_t = (float *)malloc((size_t)heads * n * n * sizeof(float));
  if (mask) mask_t = (float *)malloc((size_t)mask_windows * n * n * sizeof(float));
  if (!bias_t || (mask && !mask_t)) {
    free(bias_t);
    free(mask_t);
    return -1;
  }
  att_transpose_blocks(bias, heads, n, bias_t);
  if (mask) att_transpose_blocks(mask, mask_windows, n, mask_t);
  rc = ek_qattention_t(q, k, v, groups, heads, n, hd, 0, NULL, bias_t, mask_t, NULL, mask_windows, bounds, bits, out,
                       threads);
  free(bias_t);
  free(mask_t);
  return rc;
}
