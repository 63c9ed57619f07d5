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
#endif

#define EK_ATT_MAX_N 256
#define EK_ATT_MAX_HD 64

typedef struct {
  const float *q, *k, *v, *bias, *mask;
  float *out;
  float *scratch; /* per thread: scratch_floats floats */
  size_t scratch_floats;
  int groups, heads, n, hd, mask_windows;
  ek_qparams qq, kq, aq, vq;
} att_ctx;

/* Round half to even for 0 <= v < 2^22 (adding 1.5 * 2^23 leaves the integer part in the mantissa). */
#define EK_RNE_MAGIC 12582912.0f
#define LANES 16 /* reductions keep LANES partial results so every loop vectorises without reassociation */

static inline float att_code(float v, float lo, float hi, float step) {
  float t = v > lo ? v : lo;
  t = t < hi ? t : hi;
  t = (t - lo) / step;
  return (t + EK_RNE_MAGIC) - EK_RNE_MAGIC;
}

/* exp(x) for x <= 0 (softmax after max subtraction): Cody-Waite reduction to |r| <= ln2/2 and a degree-6
 * Taylor polynomial, 2^n built in the exponent bits; relative error about 2e-7. */
static inline float att_exp(float x) {
  float n, r, p, s;
  int32_t bits;
  x = x > -87.0f ? x : -87.0f;
  n = (x * 1.44269504f + EK_RNE_MAGIC) - EK_RNE_MAGIC;
  r = x - n * 0.693145752f;
  r = r - n * 1.42860677e-6f;
  p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  bits = ((int32_t)n + 127) << 23;
  memcpy(&s, &bits, sizeof s);
  return p * s;
}

/* Codes (as floats) of len contiguous values. */
static inline void att_codes(const float *x, int len, const ek_qparams *p, float *out) {
  const float lo = p->lo, hi = p->hi, step = p->step;
  int i;
  for (i = 0; i < len; ++i) out[i] = att_code(x[i], lo, hi, step);
}

/* Codes of an n x hd block, stored transposed (hd x n); tmp holds n * hd floats. */
static inline void att_codes_t(const float *x, int n, int hd, const ek_qparams *p, float *tmp, float *out) {
  int i, d;
  att_codes(x, n * hd, p, tmp);
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

static inline __attribute__((always_inline)) void att_range(const att_ctx *c, long long t0, long long t1,
                                                            float *scratch, int v64) {
  const int n = c->n, hd = c->hd, nh = n * hd;
  float *cq = scratch, *ckt = cq + nh, *cvt = ckt + nh, *acc = cvt + nh, *tmp = acc + nh, *cat = tmp + nh;
  float *row = cat + n * n, *rq = row + n, *ck_sum = rq + n, *ra = ck_sum + n, *cv_sum = ra + n;
  const float a_qk = c->qq.step * c->kq.step, b_qk = c->qq.step * c->kq.lo, c_qk = c->qq.lo * c->kq.step;
  const float d_qk = (float)hd * c->qq.lo * c->kq.lo;
  const float a_av = c->aq.step * c->vq.step, b_av = c->aq.step * c->vq.lo, c_av = c->aq.lo * c->vq.step;
  const float d_av = (float)n * c->aq.lo * c->vq.lo;
  const float alo = c->aq.lo, ahi = c->aq.hi, arstep = 1.0f / c->aq.step;
  long long t;
  int i, j, d;
  for (t = t0; t < t1; ++t) {
    const int g = (int)(t / c->heads), h = (int)(t % c->heads);
    const size_t off = (size_t)t * nh;
    const float *bias = c->bias + (size_t)h * n * n;
    const float *mask = c->mask ? c->mask + (size_t)(g % c->mask_windows) * n * n : NULL;
    float *out = c->out + off;
    /* Codes: q row-major (n x hd); k and v transposed (hd x n) so the inner loops run over tokens. */
    att_codes(c->q + off, nh, &c->qq, cq);
    att_codes_t(c->k + off, n, hd, &c->kq, tmp, ckt);
    att_codes_t(c->v + off, n, hd, &c->vq, tmp, cvt);
    for (i = 0; i < n; ++i) rq[i] = att_sum(cq + i * hd, hd);
    for (j = 0; j < n; ++j) ck_sum[j] = 0.0f;
    for (d = 0; d < hd; ++d)
      for (j = 0; j < n; ++j) ck_sum[j] += ckt[d * n + j];
    for (d = 0; d < hd; ++d) cv_sum[d] = att_sum(cvt + d * n, n);
    for (i = 0; i < n; ++i) {
      const float ri = b_qk * rq[i] + d_qk;
      const float *bi = bias + (size_t)i * n;
      float mx, sum;
#ifdef EK_ATT_V64
      if (v64 && n == 64) {
        axpy_sum64(cq + i * hd, ckt, hd, row);  /* row[j] = sum_d cq[i][d] ckt[d][j] */
      } else
#endif
      {
        for (j = 0; j < n; ++j) row[j] = 0.0f;
        for (d = 0; d < hd; ++d) {
          const float a = cq[i * hd + d];
          const float *kd = ckt + d * n;
          for (j = 0; j < n; ++j) row[j] += a * kd[j];
        }
      }
      for (j = 0; j < n; ++j) row[j] = a_qk * row[j] + (ri + c_qk * ck_sum[j]) + bi[j];
      if (mask)
        for (j = 0; j < n; ++j) row[j] += mask[(size_t)i * n + j];
      mx = att_max(row, n);
      for (j = 0; j < n; ++j) row[j] = att_exp(row[j] - mx);
      sum = 1.0f / att_sum(row, n);
      /* The map's codes use reciprocal multiplies (one division per row, not two per element): the
       * probabilities themselves are only as exact as the exp, so true division buys nothing here. */
      for (j = 0; j < n; ++j) {
        float p = row[j] * sum;
        p = p > alo ? p : alo;
        p = (p < ahi ? p : ahi) - alo;
        row[j] = (p * arstep + EK_RNE_MAGIC) - EK_RNE_MAGIC;
      }
      ra[i] = att_sum(row, n);
      for (j = 0; j < n; ++j) cat[j * n + i] = row[j];
    }
#ifdef EK_ATT_V64
    if (v64 && n == 64) {
      for (d = 0; d < hd; ++d) axpy_sum64(cvt + d * 64, cat, 64, acc + d * 64);  /* sum_j cv[j][d] cat[j][.] */
    } else
#endif
      for (d = 0; d < hd; ++d) {
        float *ad = acc + d * n;
        const float *vd = cvt + d * n;
        for (i = 0; i < n; ++i) ad[i] = 0.0f;
        for (j = 0; j < n; ++j) {
          const float b = vd[j];
          const float *cj = cat + j * n;
          for (i = 0; i < n; ++i) ad[i] += b * cj[i];
        }
      }
    for (i = 0; i < n; ++i)
      for (d = 0; d < hd; ++d) out[i * hd + d] = a_av * acc[d * n + i] + (b_av * ra[i] + c_av * cv_sum[d] + d_av);
  }
}

/* The 64-float vector path needs 16 registers of 16 bytes (NEON) or 4 of 64 (AVX-512); x86 without AVX-512
 * would spill them, so it takes the plain loops. */
static void att_range_generic(const att_ctx *c, long long t0, long long t1, float *scratch) {
#ifdef EK_ARM64
  att_range(c, t0, t1, scratch, 1);
#else
  att_range(c, t0, t1, scratch, 0);
#endif
}

#if defined(EK_X86) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) static void att_range_avx512(
    const att_ctx *c, long long t0, long long t1, float *scratch) {
  att_range(c, t0, t1, scratch, 1);
}
__attribute__((target("avx2,fma"))) static void att_range_avx2(const att_ctx *c, long long t0, long long t1,
                                                               float *scratch) {
  att_range(c, t0, t1, scratch, 0);
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

int edgesr_qattention(const float *q, const float *k, const float *v, int groups, int heads, int n, int hd,
                      const float *bias, const float *mask, int mask_windows, const float bounds[8], int bits,
                      float *out, int threads) {
  att_ctx c;
  long long total;
  int nt;
  if (!q || !k || !v || !bias || !bounds || !out || bits < 1 || bits > 8 || groups < 1 || heads < 1 || n < 1 ||
      n > EK_ATT_MAX_N || hd < 1 || hd > EK_ATT_MAX_HD || (mask && mask_windows < 1))
    return -1;
  c.q = q;
  c.k = k;
  c.v = v;
  c.bias = bias;
  c.mask = mask;
  c.out = out;
  c.groups = groups;
  c.heads = heads;
  c.n = n;
  c.hd = hd;
  c.mask_windows = mask ? mask_windows : 1;
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
