/* Fused 2DQuant window attention: out = Q(softmax(Q(q)·Q(k)ᵀ + bias + mask)) · Q(v), Q = per-tensor quantizer.
 *
 * One (window, head) pair at a time, entirely in L1: the n x n attention map never goes to memory, which is
 * where the unfused graph spends its time (Q·Kᵀ with hd = 10 writes 16x more than it reads).
 * Codes are carried as floats: products of codes summed over hd (or n) stay below 2^24, so the float sums are
 * the exact integer accumulators (tests compare them with an integer reference), and every loop vectorises on
 * any ISA. The body is compiled three times on x86-64 (baseline, AVX2 and AVX-512 via target attributes) and
 * once on ARM.
 *
 * Two drivers share the per-head core (att_head): the public API's, one task per (window, head) with operands
 * at any stride (SwinIR-light 64x64 tile: 64 windows x 6 heads = 384 tasks of n = 64 tokens, hd = 10), and the
 * Swin block's, one task per window on token-major codes (64 tasks; win_range), which changes layouts with
 * register tile transposes instead of element by element. The block's driver also has the codes as bytes, so on
 * AVX-512 VNNI its 64-token windows take Q·Kᵀ and attn·V as VPDPBUSD on packed codes (att_qk_vnni,
 * att_av_vnni): the same integer sums, four products per lane and instruction.
 */
#include "ek_internal.h"
#include "ek_x86_vec.h"

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
  int window_mode; /* codes, token-major, no explicit mask: tasks are whole windows (win_range) */
  int next;        /* window_mode: the next window to take (atomic) */
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

/* Codes given as bytes, rows ld apart -> floats transposed (hd x n). */
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

typedef int32_t ek_i16 __attribute__((vector_size(64), aligned(4)));

/* a > b ? a : b per lane (the scalar loops' expression; a select, no reassociation). */
static inline __attribute__((always_inline)) ek_v16 v16_max(ek_v16 a, ek_v16 b) {
  const ek_i16 gt = a > b;
  return (ek_v16)(((ek_i16)a & gt) | ((ek_i16)b & ~gt));
}

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

/* out[0..63] = sum_j s[j] x[j * 64 ..] and, if t, out[64..127] = sum_j t[j] x[j * 64 ..], j < 64: the two sums
 * share every load of x and give eight independent accumulator chains. */
static inline __attribute__((always_inline)) void axpy2_sum64(const float *s, const float *t, const float *x,
                                                              float *out) {
  ek_v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
  int j;
  if (!t) {
    axpy_sum64(s, x, 64, out);
    return;
  }
  for (j = 0; j < 64; ++j) {
    const float *xj = x + j * 64;
    const ek_v16 x0 = v16_load(xj), x1 = v16_load(xj + 16), x2 = v16_load(xj + 32), x3 = v16_load(xj + 48);
    a0 += s[j] * x0;
    a1 += s[j] * x1;
    a2 += s[j] * x2;
    a3 += s[j] * x3;
    b0 += t[j] * x0;
    b1 += t[j] * x1;
    b2 += t[j] * x2;
    b3 += t[j] * x3;
  }
  v16_store(out, a0);
  v16_store(out + 16, a1);
  v16_store(out + 32, a2);
  v16_store(out + 48, a3);
  v16_store(out + 64, b0);
  v16_store(out + 80, b1);
  v16_store(out + 96, b2);
  v16_store(out + 112, b3);
}
#endif

/* Transposes of small tiles (the window path's layout changes): dst[c * ldd + r] = src[r * lds + c] for a rows x
 * cols source; the byte version may read 15 bytes past the last row's end. Tiles of 16 x 16 bytes or 8 x 8 floats are transposed in registers by log2(tile) rounds of the
 * same interleave (row m with row m + tile/2); GCC >= 12 and Clang lower the shuffles to unpck / vpermt2 / zip.
 * Partial tiles (cols or rows not a multiple of the tile) go through a zero-padded copy or plain loops. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define EK_ATT_SHUFFLE 1
typedef uint8_t ek_u8x16 __attribute__((vector_size(16), aligned(1)));
typedef float ek_f32x8 __attribute__((vector_size(32), aligned(4)));

static inline __attribute__((always_inline)) void tile_u8(ek_u8x16 r[16]) {
  int round, m;
  for (round = 0; round < 4; ++round) {
    ek_u8x16 t[16];
    for (m = 0; m < 8; ++m) {
      t[2 * m] = __builtin_shufflevector(r[m], r[m + 8], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      t[2 * m + 1] =
          __builtin_shufflevector(r[m], r[m + 8], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    }
    for (m = 0; m < 16; ++m) r[m] = t[m];
  }
}

static inline __attribute__((always_inline)) void tile_f32(ek_f32x8 r[8]) {
  int round, m;
  for (round = 0; round < 3; ++round) {
    ek_f32x8 t[8];
    for (m = 0; m < 4; ++m) {
      t[2 * m] = __builtin_shufflevector(r[m], r[m + 4], 0, 8, 1, 9, 2, 10, 3, 11);
      t[2 * m + 1] = __builtin_shufflevector(r[m], r[m + 4], 4, 12, 5, 13, 6, 14, 7, 15);
    }
    for (m = 0; m < 8; ++m) r[m] = t[m];
  }
}
#endif

static inline __attribute__((always_inline)) void att_transpose_u8(const uint8_t *src, int rows, int cols,
                                                                   size_t lds, uint8_t *dst, size_t ldd) {
  int r0 = 0, r, c;
#ifdef EK_ATT_SHUFFLE
  for (; r0 + 16 <= rows; r0 += 16) {
    int c0;
    for (c0 = 0; c0 < cols; c0 += 16) {
      const int w = cols - c0 < 16 ? cols - c0 : 16;
      ek_u8x16 t[16];
      /* A partial tile reads up to 15 bytes past the row's end (into the next row, or the slack the caller
       * leaves after the last one); those lanes become rows c >= w of the result, which are not stored. */
      for (r = 0; r < 16; ++r) memcpy(&t[r], src + (size_t)(r0 + r) * lds + c0, 16);
      tile_u8(t);
      for (c = 0; c < w; ++c) memcpy(dst + (size_t)(c0 + c) * ldd + r0, &t[c], 16);
    }
  }
#endif
  for (r = r0; r < rows; ++r)
    for (c = 0; c < cols; ++c) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
}

static inline __attribute__((always_inline)) void att_transpose_f32(const float *src, int rows, int cols, size_t lds,
                                                                    float *dst, size_t ldd) {
  int r0 = 0, r, c;
#ifdef EK_ATT_SHUFFLE
  if (cols % 8 == 0) {
    /* Row tiles of 8; the last one may be partial (fewer rows loaded, fewer floats stored per column). */
    for (; r0 < rows; r0 += 8) {
      const int h = rows - r0 < 8 ? rows - r0 : 8;
      int c0;
      for (c0 = 0; c0 < cols; c0 += 8) {
        ek_f32x8 t[8] = {{0}};
        for (r = 0; r < h; ++r) memcpy(&t[r], src + (size_t)(r0 + r) * lds + c0, sizeof t[r]);
        tile_f32(t);
        if (h == 8) {
          for (c = 0; c < 8; ++c) memcpy(dst + (size_t)(c0 + c) * ldd + r0, &t[c], sizeof t[c]);
        } else {
          for (c = 0; c < 8; ++c)
            for (r = 0; r < h; ++r) dst[(size_t)(c0 + c) * ldd + r0 + r] = t[c][r];
        }
      }
    }
  }
#endif
  for (r = r0; r < rows; ++r)
    for (c = 0; c < cols; ++c) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
}

#if defined(EK_X86) && (defined(__GNUC__) || defined(__clang__))
#define EK_ATT_VNNI 1
#include <immintrin.h>
/* attn·V on integer codes for n = 64 (AVX-512 VNNI): acc[d][i] = sum_j vb[d][j] st[j][i], as float. st holds the
 * map's codes as floats (rows j, columns i), vb the v codes as bytes (hd rows of 64 tokens), signed 8-bit in the
 * multiply, hence codes below 128 only. The map is packed once per head: the dword of query i in group g holds
 * the codes of rows 4g..4g+3, so one VPDPBUSD adds four products for 16 queries, where the float path does one
 * per FMA. Integer sums, converted once: the same values as the float path's exact sums. */
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"))) static void att_av_vnni(
    const float *st, const uint8_t *vb, int hd, float *acc) {
  __m512i map[16][4];
  int g, q, d0, dd;
  for (g = 0; g < 16; ++g)
    for (q = 0; q < 4; ++q) {
      const float *s0 = st + (size_t)(4 * g) * 64 + 16 * q;
      const __m512i r0 = _mm512_cvtps_epi32(_mm512_loadu_ps(s0));
      const __m512i r1 = _mm512_cvtps_epi32(_mm512_loadu_ps(s0 + 64));
      const __m512i r2 = _mm512_cvtps_epi32(_mm512_loadu_ps(s0 + 128));
      const __m512i r3 = _mm512_cvtps_epi32(_mm512_loadu_ps(s0 + 192));
      map[g][q] = _mm512_or_si512(_mm512_or_si512(r0, _mm512_slli_epi32(r1, 8)),
                                  _mm512_or_si512(_mm512_slli_epi32(r2, 16), _mm512_slli_epi32(r3, 24)));
    }
  for (d0 = 0; d0 < hd; d0 += 5) { /* five channels at a time: 20 accumulators stay in registers */
    const int dn = hd - d0 < 5 ? hd - d0 : 5;
    __m512i a[5][4];
    for (dd = 0; dd < 5; ++dd)
      for (q = 0; q < 4; ++q) a[dd][q] = _mm512_setzero_si512();
    for (g = 0; g < 16; ++g)
      for (dd = 0; dd < dn; ++dd) {
        const __m512i b = _mm512_set1_epi32((int)ek_load_u32(vb + (size_t)(d0 + dd) * 64 + 4 * g));
        for (q = 0; q < 4; ++q) a[dd][q] = _mm512_dpbusd_epi32(a[dd][q], map[g][q], b);
      }
    for (dd = 0; dd < dn; ++dd)
      for (q = 0; q < 4; ++q) _mm512_storeu_ps(acc + (size_t)(d0 + dd) * 64 + 16 * q, _mm512_cvtepi32_ps(a[dd][q]));
  }
}
#endif

#ifdef EK_ATT_VNNI
/* The dwords of 16 tokens (quarter q) for a group of 4 channels 4g..4g+3 of a (hd x 64) byte block, channels
 * past hd zero: token i's dword holds its 4 codes. */
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"))) static inline __m512i att_pack4(
    const uint8_t *rows, int hd, int g, int q) {
  __m512i v = _mm512_setzero_si512();
  int t;
  for (t = 0; t < 4 && 4 * g + t < hd; ++t)
    v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                                                 (const __m128i *)(rows + (size_t)(4 * g + t) * 64 + 16 * q))),
                                             8 * t));
  return v;
}

/* Logits for n = 64 (AVX-512 VNNI), hd <= 16: st[j][i] = a_qk (sum_d kb[d][j] qb[d][i]) + rq[i] + c_qk ks[j]
 * + bias_t[j][i], the float path's expression on the same exact integer sums; with mx != NULL also the column
 * maxima (row j after row j - 1, as the scalar loop). qb, kb: codes as bytes (hd rows of 64 tokens); k codes
 * below 128 (the signed operand). */
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"))) static void att_qk_vnni(
    const uint8_t *qb, const uint8_t *kb, int hd, float a_qk, float c_qk, const float *rq, const float *ks,
    const float *bias_t, float *st, float *mx) {
  const int groups = (hd + 3) / 4;
  __m512i qp[4][4];
  __m512 m[4], r[4];
  uint32_t kp[4][64];
  int g, q, j;
  for (g = 0; g < groups; ++g)
    for (q = 0; q < 4; ++q) {
      qp[g][q] = att_pack4(qb, hd, g, q);
      _mm512_storeu_si512((void *)(kp[g] + 16 * q), att_pack4(kb, hd, g, q));
    }
  for (q = 0; q < 4; ++q) {
    m[q] = mx ? _mm512_loadu_ps(mx + 16 * q) : _mm512_setzero_ps();
    r[q] = _mm512_loadu_ps(rq + 16 * q);
  }
  for (j = 0; j < 64; ++j) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    const __m512 cj = _mm512_set1_ps(c_qk * ks[j]), aq = _mm512_set1_ps(a_qk);
    const float *bj = bias_t + (size_t)j * 64;
    float *sj = st + (size_t)j * 64;
    __m512 v;
    for (g = 0; g < groups; ++g) {
      const __m512i b = _mm512_set1_epi32((int)kp[g][j]);
      a0 = _mm512_dpbusd_epi32(a0, qp[g][0], b);
      a1 = _mm512_dpbusd_epi32(a1, qp[g][1], b);
      a2 = _mm512_dpbusd_epi32(a2, qp[g][2], b);
      a3 = _mm512_dpbusd_epi32(a3, qp[g][3], b);
    }
#define ATT_QK_OUT(A, Q)                                                                                   \
  v = _mm512_add_ps(_mm512_fmadd_ps(aq, _mm512_cvtepi32_ps(A), _mm512_add_ps(r[Q], cj)),                 \
                    _mm512_loadu_ps(bj + 16 * (Q)));                                                      \
  _mm512_storeu_ps(sj + 16 * (Q), v);                                                                     \
  if (mx) m[Q] = _mm512_mask_mov_ps(m[Q], _mm512_cmp_ps_mask(v, m[Q], _CMP_GT_OQ), v);
    ATT_QK_OUT(a0, 0)
    ATT_QK_OUT(a1, 1)
    ATT_QK_OUT(a2, 2)
    ATT_QK_OUT(a3, 3)
#undef ATT_QK_OUT
  }
  if (mx)
    for (q = 0; q < 4; ++q) _mm512_storeu_ps(mx + 16 * q, m[q]);
}
#endif

#ifdef EK_ATT_VNNI
/* AVX2 forms of the 64-token loops (16 ymm registers: the 64 sums of one row or channel in eight of them, the
 * operands as memory operands of the FMAs). Codes as floats, so the sums are exact in any order. */

/* st[j][i] = a_qk (sum_d ck[d][j] cq[d][i]) + (rq[i] + c_qk ks[j]) + bias_t[j][i], i, j < 64. */
__attribute__((target("avx2,fma"))) static void att_qk_avx2(const float *cqt, const float *ckt, int hd, float a_qk,
                                                            float c_qk, const float *rq, const float *ks,
                                                            const float *bias_t, float *st) {
  const __m256 aq = _mm256_set1_ps(a_qk);
  int j, d, q;
  for (j = 0; j < 64; ++j) {
    __m256 a[8];
    const __m256 cj = _mm256_set1_ps(c_qk * ks[j]);
    const float *bj = bias_t + (size_t)j * 64;
    float *sj = st + (size_t)j * 64;
    for (q = 0; q < 8; ++q) a[q] = _mm256_setzero_ps();
    for (d = 0; d < hd; ++d) {
      const __m256 kd = _mm256_broadcast_ss(ckt + d * 64 + j);
      const float *qd = cqt + d * 64;
      for (q = 0; q < 8; ++q) a[q] = _mm256_fmadd_ps(kd, _mm256_loadu_ps(qd + 8 * q), a[q]);
    }
    for (q = 0; q < 8; ++q)
      _mm256_storeu_ps(sj + 8 * q, _mm256_add_ps(_mm256_fmadd_ps(aq, a[q], _mm256_add_ps(_mm256_loadu_ps(rq + 8 * q), cj)),
                                                 _mm256_loadu_ps(bj + 8 * q)));
  }
}

/* Softmax down the columns of the 64 x 64 map st (given the column maxima mx) and the map's codes, as the
 * plain loops of att_head: st[j][i] = code of exp(st[j][i] - mx[i]) / sum_j(...), ra[i] = sum_j of the codes.
 * Column sums in eight registers (each lane adds its j in order, as the loop does). */
__attribute__((target("avx2,fma"))) static void att_softmax_codes_avx2(float *st, const float *mx, float *ra,
                                                                       float alo, float ahi, float arstep) {
  const __m256 lo = _mm256_set1_ps(alo), hi = _mm256_set1_ps(ahi), rs = _mm256_set1_ps(arstep);
  const __m256 magic = _mm256_set1_ps(EK_RNE_MAGIC), one = _mm256_set1_ps(1.0f);
  __m256 sum[8], inv[8];
  int j, q, h;
  for (q = 0; q < 8; ++q) sum[q] = _mm256_setzero_ps();
  for (j = 0; j < 64; ++j) {
    float *sj = st + (size_t)j * 64;
    for (q = 0; q < 8; ++q) {
      const __m256 e = ek_exp8_avx2(_mm256_sub_ps(_mm256_loadu_ps(sj + 8 * q), _mm256_loadu_ps(mx + 8 * q)));
      _mm256_storeu_ps(sj + 8 * q, e);
      sum[q] = _mm256_add_ps(sum[q], e);
    }
  }
  for (q = 0; q < 8; ++q) inv[q] = _mm256_div_ps(one, sum[q]);
  for (h = 0; h < 8; h += 4) { /* half the columns at a time: 1/sum and the code sums of 32 columns in registers */
    __m256 acc[4];
    for (q = 0; q < 4; ++q) acc[q] = _mm256_setzero_ps();
    for (j = 0; j < 64; ++j) {
      float *sj = st + (size_t)j * 64 + 8 * h;
      for (q = 0; q < 4; ++q) {
        __m256 p = _mm256_mul_ps(_mm256_loadu_ps(sj + 8 * q), inv[h + q]);
        p = _mm256_sub_ps(_mm256_min_ps(_mm256_max_ps(p, lo), hi), lo);
        p = _mm256_sub_ps(_mm256_fmadd_ps(p, rs, magic), magic);
        _mm256_storeu_ps(sj + 8 * q, p);
        acc[q] = _mm256_add_ps(acc[q], p);
      }
    }
    for (q = 0; q < 4; ++q) _mm256_storeu_ps(ra + 8 * (h + q), acc[q]);
  }
}

/* acc[d][i] = sum_j cv[d][j] st[j][i], i, j < 64. */
__attribute__((target("avx2,fma"))) static void att_av_avx2(const float *cvt, const float *st, int hd, float *acc) {
  int j, d, q;
  for (d = 0; d < hd; ++d) {
    __m256 a[8];
    const float *vd = cvt + d * 64;
    for (q = 0; q < 8; ++q) a[q] = _mm256_setzero_ps();
    for (j = 0; j < 64; ++j) {
      const __m256 c = _mm256_broadcast_ss(vd + j);
      const float *sj = st + (size_t)j * 64;
      for (q = 0; q < 8; ++q) a[q] = _mm256_fmadd_ps(c, _mm256_loadu_ps(sj + 8 * q), a[q]);
    }
    for (q = 0; q < 8; ++q) _mm256_storeu_ps(acc + d * 64 + 8 * q, a[q]);
  }
}
#endif

/* One (window, head) pair. Codes as floats, each hd x n with tokens contiguous (cqt[d * n + i], likewise ckt, cvt);
 * res (hd x n) receives the dequantized output, res[d * n + i] for query token i. mask_t: the window's mask
 * (transposed), or NULL; else lab: the window's region labels, or NULL (no shift, or one region only).
 * The map is built transposed: row j of sT holds logits (i = 0..n-1, j) for all query tokens i. Softmax over j
 * then runs down the columns, so max, sum and the map's codes are element-wise vector ops over i, and attn·V
 * reads sT rows as they are (no transpose of the map). bias_t is the bias transposed.
 * Every sum of codes (rq, the column sums of k and v, ra) is an integer below 2^24, hence exact in any order. */
static inline __attribute__((always_inline)) void att_head(const att_ctx *c, const float *EK_RESTRICT cqt,
                                                           const float *EK_RESTRICT ckt,
                                                           const float *EK_RESTRICT cvt, const float *bias_t,
                                                           const float *mask_t, const float *lab,
                                                           const uint8_t *qb, const uint8_t *kb,
                                                           const uint8_t *vb, float *EK_RESTRICT res,
                                                           float *EK_RESTRICT work, int v64, const int n_fixed,
                                                           const int hd_fixed) {
  /* n_fixed / hd_fixed: compile-time sizes of a specialised copy (0: read them from c), so the loops over
   * tokens have known trip counts and no tails. */
  const int n = n_fixed ? n_fixed : c->n, hd = hd_fixed ? hd_fixed : c->hd;
  float *EK_RESTRICT st = work, *EK_RESTRICT rq = st + n * n, *EK_RESTRICT ra = rq + n, *EK_RESTRICT mx = ra + n;
  float *EK_RESTRICT sm = mx + n, *EK_RESTRICT ks = sm + n, *EK_RESTRICT cv_sum = ks + n;
  float *EK_RESTRICT acc = cv_sum + hd + 16;
  const float a_qk = c->qq.step * c->kq.step, b_qk = c->qq.step * c->kq.lo, c_qk = c->qq.lo * c->kq.step;
  const float d_qk = (float)hd * c->qq.lo * c->kq.lo;
  const float a_av = c->aq.step * c->vq.step, b_av = c->aq.step * c->vq.lo, c_av = c->aq.lo * c->vq.step;
  const float d_av = (float)n * c->aq.lo * c->vq.lo;
  const float alo = c->aq.lo, ahi = c->aq.hi, arstep = 1.0f / c->aq.step;
  int i, j, d, max_done = 0; /* max_done: the logit pass also took the column maxima */
  (void)qb; /* the byte codes feed only the VNNI path */
  (void)kb;
  (void)vb;
  for (i = 0; i < n; ++i) {
    rq[i] = 0.0f;
    ks[i] = 0.0f;
  }
  for (d = 0; d < hd; ++d)
    for (i = 0; i < n; ++i) {
      rq[i] += cqt[d * n + i];
      ks[i] += ckt[d * n + i];
    }
  for (i = 0; i < n; ++i) {
    rq[i] = b_qk * rq[i] + d_qk;
    mx[i] = -INFINITY;
    sm[i] = 0.0f;
    ra[i] = 0.0f;
  }
  for (d = 0; d < hd; ++d) cv_sum[d] = att_sum(cvt + d * n, n);
#ifdef EK_ATT_VNNI
  if (v64 == 2 && qb && n == 64 && hd <= 16 && c->kq.levels < 128 && c->qq.levels < 256) {
    max_done = !mask_t && !lab;
    att_qk_vnni(qb, kb, hd, a_qk, c_qk, rq, ks, bias_t, st, max_done ? mx : NULL);
  } else
#endif
#ifdef EK_ATT_VNNI
  if (v64 == 3 && n == 64) {
    att_qk_avx2(cqt, ckt, hd, a_qk, c_qk, rq, ks, bias_t, st);
  } else
#endif
#ifdef EK_ATT_V64
  if (v64 && n == 64) {
    /* Logit rows j and j + 1 together: eight independent accumulator chains keep both FMA ports busy, and each
     * q vector loaded serves two rows. sj = a_qk (sum_d ck[j][d] cq[.][d]) + rq + cj + bias. Without a mask the
     * column maxima are taken here, in registers. */
    const int fuse_max = !mask_t && !lab;
    ek_v16 m0 = v16_load(mx), m1 = v16_load(mx + 16), m2 = v16_load(mx + 32), m3 = v16_load(mx + 48);
    for (j = 0; j < 64; j += 2) {
      const float *qd = cqt;
      ek_v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
      for (d = 0; d < hd; ++d, qd += 64) {
        const float ka = ckt[d * 64 + j], kb = ckt[d * 64 + j + 1];
        const ek_v16 q0 = v16_load(qd), q1 = v16_load(qd + 16), q2 = v16_load(qd + 32), q3 = v16_load(qd + 48);
        a0 += ka * q0;
        a1 += ka * q1;
        a2 += ka * q2;
        a3 += ka * q3;
        b0 += kb * q0;
        b1 += kb * q1;
        b2 += kb * q2;
        b3 += kb * q3;
      }
      {
        float *sa = st + (size_t)j * 64, *sb = sa + 64;
        const float *ba = bias_t + (size_t)j * 64, *bb = ba + 64;
        const float ca = c_qk * ks[j], cb = c_qk * ks[j + 1];
        a0 = a_qk * a0 + (v16_load(rq) + ca) + v16_load(ba);
        a1 = a_qk * a1 + (v16_load(rq + 16) + ca) + v16_load(ba + 16);
        a2 = a_qk * a2 + (v16_load(rq + 32) + ca) + v16_load(ba + 32);
        a3 = a_qk * a3 + (v16_load(rq + 48) + ca) + v16_load(ba + 48);
        b0 = a_qk * b0 + (v16_load(rq) + cb) + v16_load(bb);
        b1 = a_qk * b1 + (v16_load(rq + 16) + cb) + v16_load(bb + 16);
        b2 = a_qk * b2 + (v16_load(rq + 32) + cb) + v16_load(bb + 32);
        b3 = a_qk * b3 + (v16_load(rq + 48) + cb) + v16_load(bb + 48);
        v16_store(sa, a0);
        v16_store(sa + 16, a1);
        v16_store(sa + 32, a2);
        v16_store(sa + 48, a3);
        v16_store(sb, b0);
        v16_store(sb + 16, b1);
        v16_store(sb + 32, b2);
        v16_store(sb + 48, b3);
        if (fuse_max) { /* row j first, then j + 1: the order of the scalar loop */
          m0 = v16_max(b0, v16_max(a0, m0));
          m1 = v16_max(b1, v16_max(a1, m1));
          m2 = v16_max(b2, v16_max(a2, m2));
          m3 = v16_max(b3, v16_max(a3, m3));
        }
      }
    }
    max_done = fuse_max;
    if (fuse_max) {
      v16_store(mx, m0);
      v16_store(mx + 16, m1);
      v16_store(mx + 32, m2);
      v16_store(mx + 48, m3);
    }
  } else
#endif
    for (j = 0; j < n; ++j) {
      float *sj = st + (size_t)j * n;
      const float *bj = bias_t + (size_t)j * n;
      const float cj = c_qk * ks[j];
      for (i = 0; i < n; ++i) sj[i] = 0.0f;
      for (d = 0; d < hd; ++d) {
        const float a = ckt[d * n + j];
        const float *qd = cqt + d * n;
        for (i = 0; i < n; ++i) sj[i] += a * qd[i];
      }
      for (i = 0; i < n; ++i) sj[i] = a_qk * sj[i] + (rq[i] + cj) + bj[i];
    }
  for (j = 0; j < n && !max_done; ++j) {
    float *sj = st + (size_t)j * n;
    if (mask_t) {
      const float *mj = mask_t + (size_t)j * n;
      for (i = 0; i < n; ++i) sj[i] += mj[i];
    } else if (lab) {
      const float lj = lab[j];
      for (i = 0; i < n; ++i) sj[i] += lab[i] == lj ? 0.0f : -100.0f;
    }
    for (i = 0; i < n; ++i) mx[i] = sj[i] > mx[i] ? sj[i] : mx[i];
  }
  /* The map's codes use reciprocal multiplies (one division per query, not one per element): the
   * probabilities themselves are only as exact as the exp, so true division buys nothing here. */
#ifdef EK_ATT_VNNI
  if (v64 == 3 && n == 64) /* GCC leaves the exp loop scalar in the AVX2 copy */
    att_softmax_codes_avx2(st, mx, ra, alo, ahi, arstep);
  else
#endif
  {
  for (j = 0; j < n; ++j) {
    float *sj = st + (size_t)j * n;
    for (i = 0; i < n; ++i) {
      const float e = ek_exp_approx(sj[i] - mx[i]);
      sj[i] = e;
      sm[i] += e;
    }
  }
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
  }
#ifdef EK_ATT_VNNI
  if (v64 == 2 && vb && n == 64 && c->vq.levels < 128 && c->aq.levels < 256) {
    att_av_vnni(st, vb, hd, acc);
  } else
#endif
#ifdef EK_ATT_VNNI
  if (v64 == 3 && n == 64) {
    att_av_avx2(cvt, st, hd, acc);
  } else
#endif
#ifdef EK_ATT_V64
  if (v64 && n == 64) {
    for (d = 0; d < hd; d += 2) /* acc[d][.] = sum_j cv[j][d] ca[.][j], two channels per pass over the map */
      axpy2_sum64(cvt + d * 64, d + 1 < hd ? cvt + (d + 1) * 64 : NULL, st, acc + d * 64);
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
  for (d = 0; d < hd; ++d) {
    const float cd = c_av * cv_sum[d];
    for (i = 0; i < n; ++i) res[d * n + i] = a_av * acc[d * n + i] + (b_av * ra[i] + cd + d_av);
  }
}

/* Floats of att_head's work area. */
static size_t att_work_floats(int n, int hd) { return (size_t)n * n + 5 * (size_t)n + 2 * (size_t)hd * n + hd + 32; }

/* The window's labels, or NULL when they are all equal (no token of the window is masked). */
static inline const float *att_window_labels(const float *lab, int n) {
  int i;
  if (!lab) return NULL;
  for (i = 1; i < n; ++i)
    if (lab[i] != lab[0]) return lab;
  return NULL;
}

/* Tasks of edgesr_qattention / ek_qattention_t: one (window, head) pair each, operands with any row stride. */
static inline __attribute__((always_inline)) void att_range(const att_ctx *c, long long t0, long long t1,
                                                            float *scratch, int v64, const int n_fixed,
                                                            const int hd_fixed) {
  const int n = n_fixed ? n_fixed : c->n, hd = hd_fixed ? hd_fixed : c->hd, nh = n * hd;
  float *EK_RESTRICT cqt = scratch, *EK_RESTRICT ckt = cqt + nh, *EK_RESTRICT cvt = ckt + nh;
  float *EK_RESTRICT res = cvt + nh, *EK_RESTRICT tmp = res + nh, *EK_RESTRICT work = tmp + nh;
  long long t;
  int i, d;
  for (t = t0; t < t1; ++t) {
    const int g = (int)(t / c->heads), h = (int)(t % c->heads);
    const int ld = c->token_major ? c->heads * hd : hd;
    const size_t off = c->token_major ? (size_t)g * n * ld + (size_t)h * hd : (size_t)t * nh;
    const float *bias_t = c->bias + (size_t)h * n * n;
    const float *mask_t = c->mask ? c->mask + (size_t)(g % c->mask_windows) * n * n : NULL;
    const float *lab = c->labels ? att_window_labels(c->labels + (size_t)(g % c->mask_windows) * n, n) : NULL;
    float *out = c->out + off;
    /* Codes, each transposed (hd x n) so the vector loops run over tokens. */
    if (c->qc) {
      att_u8_t(c->qc + off, n, hd, ld, cqt);
      att_u8_t(c->kc + off, n, hd, ld, ckt);
      att_u8_t(c->vc + off, n, hd, ld, cvt);
    } else {
      att_codes_t(c->q + off, n, hd, ld, &c->qq, tmp, cqt);
      att_codes_t(c->k + off, n, hd, ld, &c->kq, tmp, ckt);
      att_codes_t(c->v + off, n, hd, ld, &c->vq, tmp, cvt);
    }
    att_head(c, cqt, ckt, cvt, bias_t, mask_t, lab, NULL, NULL, NULL, res, work, v64, n_fixed, hd_fixed);
    for (i = 0; i < n; ++i)
      for (d = 0; d < hd; ++d) out[(size_t)i * ld + d] = res[d * n + i];
  }
}

/* Tasks of ek_window_attention: whole windows, all heads, from token-major codes to token-major output.
 * Per window: the three n x dim code tiles are transposed to dim x n (each head's hd rows are then one contiguous
 * hd x n block), every head writes its hd output rows of a dim x n tile, and that tile is transposed back. */
static inline __attribute__((always_inline)) void win_range(const att_ctx *c, int *next, float *scratch, int v64,
                                                            const int n_fixed, const int hd_fixed) {
  const int n = n_fixed ? n_fixed : c->n, hd = hd_fixed ? hd_fixed : c->hd, nh = n * hd;
  const int dim = c->heads * hd;
  float *EK_RESTRICT cqt = scratch, *EK_RESTRICT ckt = cqt + nh, *EK_RESTRICT cvt = ckt + nh;
  float *EK_RESTRICT ob = cvt + nh, *EK_RESTRICT work = ob + (size_t)dim * n;
  uint8_t *EK_RESTRICT tq = (uint8_t *)(work + att_work_floats(n, hd)), *EK_RESTRICT tk = tq + (size_t)dim * n;
  uint8_t *EK_RESTRICT tv = tk + (size_t)dim * n;
  int g, h, e;
  while ((g = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED)) < c->groups) {
    const size_t off = (size_t)g * n * dim;
    const float *lab = c->labels ? att_window_labels(c->labels + (size_t)(g % c->mask_windows) * n, n) : NULL;
    att_transpose_u8(c->qc + off, n, dim, (size_t)dim, tq, (size_t)n);
    att_transpose_u8(c->kc + off, n, dim, (size_t)dim, tk, (size_t)n);
    att_transpose_u8(c->vc + off, n, dim, (size_t)dim, tv, (size_t)n);
    for (h = 0; h < c->heads; ++h) {
      const size_t ho = (size_t)h * nh;
      for (e = 0; e < nh; ++e) {
        cqt[e] = (float)tq[ho + e];
        ckt[e] = (float)tk[ho + e];
        cvt[e] = (float)tv[ho + e];
      }
      att_head(c, cqt, ckt, cvt, c->bias + (size_t)h * n * n, NULL, lab, tq + ho, tk + ho, tv + ho, ob + ho, work,
               v64, n_fixed, hd_fixed);
    }
    att_transpose_f32(ob, dim, n, (size_t)n, c->out + off, (size_t)dim);
  }
}

/* The 64-float vector path's two-row loops need 16 registers of 16 bytes (NEON) or 4 of 64 (AVX-512); AVX2 has
 * 16 of 32 and would spill them, so it takes the one-row forms (v64 = 3). Each path has a copy specialised for
 * SwinIR-light's window (n = 64 tokens, hd = 10) and a general one. */
#define ATT_DISPATCH(c, v64)                                                               \
  do {                                                                                     \
    if ((c)->n == 64 && (c)->hd == 10)                                                     \
      ATT_RUN(c, v64, 64, 10);                                                             \
    else if ((c)->n == 64)                                                                 \
      ATT_RUN(c, v64, 64, 0);                                                              \
    else                                                                                   \
      ATT_RUN(c, v64, 0, 0);                                                               \
  } while (0)
#define ATT_RUN(c, v64, nf, hf)                                                            \
  do {                                                                                     \
    if ((c)->window_mode)                                                                  \
      win_range(c, &(c)->next, scratch, v64, nf, hf);                                      \
    else                                                                                   \
      att_range(c, t0, t1, scratch, v64, nf, hf);                                          \
  } while (0)

static void att_range_generic(att_ctx *c, long long t0, long long t1, float *scratch) {
#ifdef EK_ARM64
  ATT_DISPATCH(c, 1);
#else
  ATT_DISPATCH(c, 0);
#endif
}

#if defined(EK_X86) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"))) static void att_range_avx512(
    att_ctx *c, long long t0, long long t1, float *scratch) {
  ATT_DISPATCH(c, 2); /* 2: also the VNNI attn·V */
}
__attribute__((target("avx2,fma"))) static void att_range_avx2(att_ctx *c, long long t0, long long t1,
                                                               float *scratch) {
  ATT_DISPATCH(c, 3); /* 3: the one-row forms of the 64-token loops */
}
#endif

static void att_task(void *ctx, int tid, int nt) {
  att_ctx *c = (att_ctx *)ctx;
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
  c.window_mode = codes && token_major && !mask_t;
  c.next = 0;
  total = c.window_mode ? groups : (long long)groups * heads;
  nt = ek_clamp_threads(threads);
  if (nt > total) nt = (int)total;
  /* Per-thread working set (n = 64, hd = 10, 6 heads: 58 KB in window mode, 36 KB otherwise): the codes of one
   * head as floats, the n x n map and its sums; per window the three transposed code tiles and the output tile. */
  c.scratch_floats = att_work_floats(n, hd) +
                     (c.window_mode ? 3 * (size_t)n * hd + (size_t)heads * hd * n + ((size_t)heads * hd * n * 3 + 3) / 4
                                    : 5 * (size_t)n * hd);
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
