/* x86-64 AVX2 + FMA path (compiled with -mavx2 -mfma).
 *
 * Weights: blocks of 8 output channels; per block, per group of 4 k, the 4 codes of each channel (32 bytes, one
 * ymm). VPMADDUBSW multiplies a broadcast dword of 4 unsigned activation codes with the (signed) weight codes
 * and adds adjacent pairs into int16 lanes.
 *  - Codes up to 7 bits: the pair sums (at most 2 L^2 for L = 2^bits - 1) are added up in int16 over a chunk of
 *    `chunk` groups with 16-bit adds, where chunk * 2 L^2 <= 32767 (W4A4: 72 groups, K up to 288, so one chunk
 *    for every SwinIR-light linear), and only then widened to int32 by VPMADDWD with ones. Per 32 products that
 *    is one multiply instruction instead of two: the multiply ports are what bounds this loop.
 *  - 8-bit codes would saturate VPMADDUBSW, so they are stored as int16 pairs instead (groups of 2 k, 8 channels,
 *    32 bytes) and multiplied with VPMADDWD into int32: exact for every code.
 * A tile is AVX2_MR rows x AVX2_NC blocks of 8 channels held in registers over the whole K.
 */
#include "ek_internal.h"

#ifdef EK_HAVE_AVX2
#include <immintrin.h>

#ifndef AVX2_MR
#define AVX2_MR 4
#endif
#ifndef AVX2_NC
#define AVX2_NC 2
#endif

static size_t avx2_packed_size(int n, int kp, int bits) {
  return (size_t)((n + 7) / 8) * 8u * (size_t)kp * (bits == 8 ? 2u : 1u);
}

static void avx2_pack(const uint8_t *codes, int n, int kp, int bits, uint8_t *dst) {
  const int nb = (n + 7) / 8;
  int b, g, j, t;
  if (bits == 8) {
    const int groups = kp / 2;
    int16_t *d16 = (int16_t *)(void *)dst;
    for (b = 0; b < nb; ++b)
      for (g = 0; g < groups; ++g) {
        int16_t *d = d16 + ((size_t)b * groups + g) * 16;
        for (j = 0; j < 8; ++j) {
          int ch = b * 8 + j;
          for (t = 0; t < 2; ++t) d[j * 2 + t] = ch < n ? (int16_t)codes[(size_t)ch * kp + g * 2 + t] : 0;
        }
      }
  } else {
    const int groups = kp / 4;
    for (b = 0; b < nb; ++b)
      for (g = 0; g < groups; ++g) {
        uint8_t *d = dst + ((size_t)b * groups + g) * 32;
        for (j = 0; j < 8; ++j) {
          int ch = b * 8 + j;
          for (t = 0; t < 4; ++t) d[j * 4 + t] = ch < n ? codes[(size_t)ch * kp + g * 4 + t] : 0;
        }
      }
  }
}

/* A layer whose N is not a multiple of 8 gets a channel of ones in the padding of its last block: its
 * accumulator is the row sum RX, so the quantizer need not compute it (narrow codes only). */
static int avx2_add_ones_channel(uint8_t *packed, int n, int kp, int bits) {
  const int groups = kp / 4, nb = (n + 7) / 8, j = n % 8;
  int g;
  if (j == 0 || bits == 8) return 0;
  for (g = 0; g < groups; ++g) memset(packed + ((size_t)(nb - 1) * groups + g) * 32 + j * 4, 1, 4);
  return 1;
}

/* The GEMM arguments as locals: stores through y must not force reloads of every field. */
typedef struct {
  const uint8_t *x, *w;
  size_t ldx, ldy, ldacc, bstride;
  int groups, chunk, n, nb, wide, ones_lane;
  __m256i last_mask; /* channels of the last block */
  const float *rt, *ct;
  float alpha, c_rx;
  float *y;
  int32_t *acc;
} avx2_ctx;

/* acc + p in int16 lanes. Inline assembly on GCC: with the intrinsic, GCC 12 copies the accumulators of a
 * register-blocked tile through other registers (and the stack) on every step. */
EK_INLINE __m256i add16(__m256i acc, __m256i p) {
#if defined(__GNUC__) && !defined(__clang__)
  __asm__("vpaddw %1, %0, %0" : "+x"(acc) : "x"(p));
  return acc;
#else
  return _mm256_add_epi16(acc, p);
#endif
}

/* s[r][c] += pair sums of groups [g0, g1) in int16 (narrow codes). */
EK_INLINE void avx2_dot16(const avx2_ctx *a, const uint8_t *x, const uint8_t *w, const int R, const int C, int g0,
                          int g1, __m256i s[AVX2_MR][4]) {
  int r, c, g;
#pragma GCC unroll 8
  for (r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (c = 0; c < C; ++c) s[r][c] = _mm256_setzero_si256();
  for (g = g0; g < g1; ++g) {
    __m256i wv[4];
#pragma GCC unroll 4
    for (c = 0; c < C; ++c) wv[c] = _mm256_loadu_si256((const __m256i *)(const void *)(w + c * a->bstride + (size_t)g * 32));
#pragma GCC unroll 8
    for (r = 0; r < R; ++r) {
      const __m256i xb = _mm256_set1_epi32((int)ek_load_u32(x + (size_t)r * a->ldx + (size_t)g * 4));
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) s[r][c] = add16(s[r][c], _mm256_maddubs_epi16(xb, wv[c]));
    }
  }
}

/* One tile: R rows x C blocks from block b0. rt: this tile's row terms; with find_rx (the blocks holding the ones
 * channel) an output, filled from that channel before the epilogue. */
EK_INLINE void avx2_tile(const avx2_ctx *a, int m0, const int R, int b0, const int C, float *rt, const int find_rx) {
  const uint8_t *x = a->x + (size_t)m0 * a->ldx;
  const uint8_t *w = a->w + (size_t)b0 * a->bstride;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[AVX2_MR][4];
  int r, c, g;
  if (a->wide) {
#pragma GCC unroll 8
    for (r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_si256();
    for (g = 0; g < a->groups; ++g) {
      __m256i wv[4];
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) wv[c] = _mm256_loadu_si256((const __m256i *)(const void *)(w + c * a->bstride + (size_t)g * 32));
#pragma GCC unroll 4
      for (r = 0; r < R; ++r) {
        const uint8_t *p = x + (size_t)r * a->ldx + (size_t)g * 2;
        const __m256i xb = _mm256_set1_epi32((int)((uint32_t)p[0] | ((uint32_t)p[1] << 16)));
#pragma GCC unroll 4
        for (c = 0; c < C; ++c) acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(xb, wv[c]));
      }
    }
  } else {
    __m256i s[AVX2_MR][4];
    avx2_dot16(a, x, w, R, C, 0, ek_min(a->chunk, a->groups), s);
#pragma GCC unroll 8
    for (r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) acc[r][c] = _mm256_madd_epi16(s[r][c], ones);
    for (g = a->chunk; g < a->groups; g += a->chunk) { /* K beyond one chunk (long K, 5- to 7-bit codes) */
      avx2_dot16(a, x, w, R, C, g, ek_min(g + a->chunk, a->groups), s);
#pragma GCC unroll 4
      for (r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (c = 0; c < C; ++c) acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(s[r][c], ones));
    }
  }
  if (find_rx) {
    const __m256i lane = _mm256_set1_epi32(a->ones_lane);
#pragma GCC unroll 8
    for (r = 0; r < R; ++r) /* as the caller would have */
      rt[r] = a->c_rx * (float)_mm256_cvtsi256_si32(_mm256_permutevar8x32_epi32(acc[r][C - 1], lane));
  }
#pragma GCC unroll 8
  for (r = 0; r < R; ++r) {
    const int row = m0 + r;
    if (a->y) {
      const __m256 rowadd = _mm256_set1_ps(rt[r]), alpha = _mm256_set1_ps(a->alpha);
      float *yr = a->y + (size_t)row * a->ldy;
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) {
        const int ch = (b0 + c) * 8;
        const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][c]), alpha,
                                         _mm256_add_ps(rowadd, _mm256_loadu_ps(a->ct + ch)));
        if (b0 + c == a->nb - 1)
          _mm256_maskstore_ps(yr + ch, a->last_mask, f);
        else
          _mm256_storeu_ps(yr + ch, f);
      }
    } else {
      int32_t *ar = a->acc + (size_t)row * a->ldacc;
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) {
        const int ch = (b0 + c) * 8;
        if (b0 + c == a->nb - 1)
          _mm256_maskstore_epi32((int *)(void *)(ar + ch), a->last_mask, acc[r][c]);
        else
          _mm256_storeu_si256((__m256i *)(void *)(ar + ch), acc[r][c]);
      }
    }
  }
}

/* All channel blocks of rows m0..m0+R-1. With a ones channel the last chunk of blocks goes first: it yields RX. */
#define AVX2_TILE_C(A, M0, R, B0, NCOLS, RT, FIND)      \
  switch (NCOLS) {                                      \
  case 4: avx2_tile(A, M0, R, B0, 4, RT, FIND); break; \
  case 3: avx2_tile(A, M0, R, B0, 3, RT, FIND); break; \
  case 2: avx2_tile(A, M0, R, B0, 2, RT, FIND); break; \
  default: avx2_tile(A, M0, R, B0, 1, RT, FIND); break; \
  }

EK_INLINE void avx2_rows(const avx2_ctx *a, int m0, const int R) {
  const int last = (a->nb - 1) / AVX2_NC * AVX2_NC;
  float rt_own[AVX2_MR];
  float *rt = (float *)(uintptr_t)(a->rt ? a->rt + m0 : NULL);
  int b0;
  if (a->ones_lane >= 0) {
    rt = rt_own;
    AVX2_TILE_C(a, m0, R, last, a->nb - last, rt, 1)
    for (b0 = 0; b0 < last; b0 += AVX2_NC) avx2_tile(a, m0, R, b0, AVX2_NC, rt, 0);
    return;
  }
  for (b0 = 0; b0 < a->nb; b0 += AVX2_NC) AVX2_TILE_C(a, m0, R, b0, ek_min(AVX2_NC, a->nb - b0), rt, 0)
}

static void avx2_gemm(const ek_gemm_args *a) {
  const int nb = (a->n + 7) / 8, levels = (1 << a->bits) - 1, last = a->n - (nb - 1) * 8;
  int m0 = 0;
  avx2_ctx A;
  A.x = a->x;
  A.w = a->w;
  A.ldx = a->ldx;
  A.ldy = a->ldy;
  A.ldacc = a->ldacc;
  A.wide = a->bits == 8;
  A.groups = A.wide ? a->kp / 2 : a->kp / 4;
  A.bstride = (size_t)A.groups * 32;
  A.chunk = A.wide ? A.groups : ek_max(1, 32767 / (2 * levels * levels)); /* int16 pair sums that cannot overflow */
  A.n = a->n;
  A.nb = nb;
  A.ones_lane = a->ones_channel ? a->n % 8 : -1;
  A.last_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(last), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  A.rt = a->rt;
  A.ct = a->ct;
  A.alpha = a->alpha;
  A.c_rx = a->c_rx;
  A.y = a->y;
  A.acc = a->acc;
  for (; m0 + AVX2_MR <= a->m; m0 += AVX2_MR) avx2_rows(&A, m0, AVX2_MR);
  for (; m0 < a->m; ++m0) avx2_rows(&A, m0, 1);
}

/* Quantizer constants in registers. */
typedef struct {
  __m256 lo, hi, step, rstep, thr, absmask;
  __m256 nlr_up, top_up, band; /* the floor form (avx2_floor_codes) */
  int fast;
} avx2_q;

EK_INLINE avx2_q avx2_q_make(const ek_qparams *q) {
  avx2_q c;
  c.lo = _mm256_set1_ps(q->lo);
  c.hi = _mm256_set1_ps(q->hi);
  c.step = _mm256_set1_ps(q->step);
  c.rstep = _mm256_set1_ps(q->rstep);
  c.thr = _mm256_set1_ps(0.5f - EK_NEAR_HALF);
  c.absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  c.nlr_up = _mm256_set1_ps(q->nlr + (0.5f + EK_NEAR_HALF));
  c.top_up = _mm256_set1_ps((float)q->levels + (0.5f + EK_NEAR_HALF));
  c.band = _mm256_set1_ps(2.0f * EK_NEAR_HALF);
  c.fast = q->fast;
  return c;
}

/* Codes (int32 lanes) of the true quotients of the lanes flagged in near, by the division. max_ps returns its
 * second operand for NaN: NaN gives code 0. */
EK_INLINE __m256i avx2_divide(const avx2_q *c, __m256 v, __m256 near, __m256 codes) {
  const __m256 t = _mm256_sub_ps(_mm256_min_ps(_mm256_max_ps(v, c->lo), c->hi), c->lo);
  const __m256 e = _mm256_round_ps(_mm256_div_ps(t, c->step), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_cvtps_epi32(_mm256_blendv_ps(codes, e, near));
}

/* Codes of 8 floats, clamp / multiply / round form (any quantizer). */
EK_INLINE __m256i avx2_codes8(const avx2_q *c, __m256 v) {
  const __m256 t = _mm256_sub_ps(_mm256_min_ps(_mm256_max_ps(v, c->lo), c->hi), c->lo);
  const __m256 guess = _mm256_mul_ps(t, c->rstep);
  const __m256 r = _mm256_round_ps(guess, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 near = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(guess, r), c->absmask), c->thr, _CMP_NLT_UQ);
  if (_mm256_movemask_ps(near)) return avx2_divide(c, v, near, r);
  return _mm256_cvtps_epi32(r);
}

/* Codes of 8 floats in the floor form of the fast quantizer (the reasoning of vnni_floor_codes): with
 * h = min(L + 0.5 + E, fma(v, rstep, nlr + 0.5 + E)), the code is floor(h) unless h - floor(h) < 2E (NaN and
 * infinities included), which is redone with the division. Below the range floor(h) is negative: the caller's
 * saturating packs make it 0. */
EK_INLINE __m256i avx2_floor_codes(const avx2_q *c, __m256 v) {
  const __m256 h = _mm256_min_ps(c->top_up, _mm256_fmadd_ps(v, c->rstep, c->nlr_up));
  const __m256 f = _mm256_round_ps(h, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m256 near = _mm256_cmp_ps(_mm256_sub_ps(h, f), c->band, _CMP_NGE_UQ);
  if (_mm256_movemask_ps(near)) return avx2_divide(c, v, near, f);
  return _mm256_cvtps_epi32(f);
}

/* Four vectors of int32 codes (at most 255, negatives clamp to 0) as 32 bytes in order. */
EK_INLINE __m256i avx2_pack32(__m256i a, __m256i b, __m256i d, __m256i e) {
  const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(d, e));
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Eight int32 codes as 8 bytes (negatives clamp to 0). */
EK_INLINE __m128i avx2_pack8(__m256i a) {
  const __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
  return _mm_packus_epi16(h, h);
}

/* n contiguous floats to n codes. */
static void avx2_quantize_flat(const float *x, size_t n, const avx2_q *c, uint8_t *codes) {
  size_t i = 0;
  if (c->fast)
    for (; i + 32 <= n; i += 32)
      _mm256_storeu_si256((__m256i *)(void *)(codes + i),
                          avx2_pack32(avx2_floor_codes(c, _mm256_loadu_ps(x + i)),
                                      avx2_floor_codes(c, _mm256_loadu_ps(x + i + 8)),
                                      avx2_floor_codes(c, _mm256_loadu_ps(x + i + 16)),
                                      avx2_floor_codes(c, _mm256_loadu_ps(x + i + 24))));
  for (; i + 8 <= n; i += 8) _mm_storel_epi64((__m128i *)(void *)(codes + i), avx2_pack8(avx2_codes8(c, _mm256_loadu_ps(x + i))));
  if (i < n) {
    float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint8_t out[16];
    memcpy(tmp, x + i, sizeof(float) * (n - i));
    _mm_storeu_si128((__m128i *)(void *)out, avx2_pack8(avx2_codes8(c, _mm256_loadu_ps(tmp))));
    memcpy(codes + i, out, n - i);
  }
}

/* Sum of k code bytes: VPSADBW on 32-, 16- and 8-byte pieces, then the last few bytes one by one. */
EK_INLINE int32_t avx2_row_sum(const uint8_t *row, int k) {
  __m256i s = _mm256_setzero_si256();
  __m128i h;
  int32_t t;
  int i = 0;
  for (; i + 32 <= k; i += 32)
    s = _mm256_add_epi64(s, _mm256_sad_epu8(_mm256_loadu_si256((const __m256i *)(const void *)(row + i)),
                                            _mm256_setzero_si256()));
  h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  if (i + 16 <= k) {
    h = _mm_add_epi64(h, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(const void *)(row + i)), _mm_setzero_si128()));
    i += 16;
  }
  if (i + 8 <= k) {
    h = _mm_add_epi64(h, _mm_sad_epu8(_mm_loadl_epi64((const __m128i *)(const void *)(row + i)), _mm_setzero_si128()));
    i += 8;
  }
  t = (int32_t)(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1));
  for (; i < k; ++i) t += row[i];
  return t;
}

static void avx2_quantize_rows(const float *x, size_t ldx, int m, int k, int kp, const ek_qparams *q, uint8_t *codes,
                               size_t ldc, int32_t *rowsum) {
  const avx2_q c = avx2_q_make(q);
  int r;
  if (!q->valid) {
    ek_scalar_quantize_rows(x, ldx, m, k, kp, q, codes, ldc, rowsum);
    return;
  }
  if (k == kp && (ldx == (size_t)k || m == 1) && (ldc == (size_t)k || m == 1)) {
    avx2_quantize_flat(x, (size_t)m * k, &c, codes); /* no padding and contiguous rows: one stream */
  } else {
    for (r = 0; r < m; ++r) {
      uint8_t *cr = codes + (size_t)r * ldc;
      avx2_quantize_flat(x + (size_t)r * ldx, (size_t)k, &c, cr);
      if (kp > k) memset(cr + k, 0, (size_t)(kp - k));
    }
  }
  if (rowsum)
    for (r = 0; r < m; ++r) rowsum[r] = avx2_row_sum(codes + (size_t)r * ldc, k);
}

const ek_ops ek_ops_avx2 = {EDGESR_ISA_AVX2,    4,    avx2_packed_size, avx2_pack, avx2_gemm, avx2_quantize_rows,
                            NULL,               avx2_add_ones_channel};

#else
typedef int ek_avx2_unused; /* not an x86-64 build: nothing to compile */
#endif
