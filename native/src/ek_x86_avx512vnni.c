/* x86-64 AVX-512 VNNI path (compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni).
 *
 * Weights: blocks of 16 output channels; per block, per group of 4 k, the 4 codes of each of the 16 channels
 * (64 bytes, one zmm): VPDPBUSD multiplies a broadcast dword of 4 unsigned activation codes with them and adds
 * the 4 products into each channel's int32 lane. The weight operand is signed: codes up to 127 are stored as
 * they are, 8-bit codes as code - 128, and the kernel adds back 128 * RX[m] (exact in int32).
 * A tile is VNNI_MR rows x VNNI_NC blocks of 16 channels held in registers over the whole K.
 */
#include "ek_internal.h"

#ifdef EK_HAVE_AVX512VNNI
#include <immintrin.h>

#ifndef VNNI_MR
#define VNNI_MR 4
#endif
#ifndef VNNI_NC
#define VNNI_NC 4
#endif

/* acc += u8(x) . s8(w) per dword lane. Inline assembly on GCC: with the intrinsic, GCC 12 copies every
 * accumulator of a register-blocked tile through other registers (and the stack) on each step. */
EK_INLINE __m512i dpbusd(__m512i acc, __m512i x, __m512i w) {
#if defined(__GNUC__) && !defined(__clang__)
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
  return acc;
#else
  return _mm512_dpbusd_epi32(acc, x, w);
#endif
}

static size_t vnni_packed_size(int n, int kp, int bits) {
  (void)bits;
  return (size_t)((n + 15) / 16) * 16u * (size_t)kp;
}

static void vnni_pack(const uint8_t *codes, int n, int kp, int bits, uint8_t *dst) {
  const int nb = (n + 15) / 16, groups = kp / 4;
  const uint8_t sub = bits == 8 ? 128 : 0;
  int b, g, j, t;
  for (b = 0; b < nb; ++b)
    for (g = 0; g < groups; ++g) {
      uint8_t *d = dst + ((size_t)b * groups + g) * 64;
      for (j = 0; j < 16; ++j) {
        int ch = b * 16 + j;
        for (t = 0; t < 4; ++t) d[j * 4 + t] = ch < n ? (uint8_t)(codes[(size_t)ch * kp + g * 4 + t] - sub) : 0;
      }
    }
}

/* A linear layer whose N is not a multiple of 16 gets a channel of ones in the padding of its last block:
 * its accumulator is the row sum RX, so the quantizer need not compute it. Stored as 1 even for 8-bit codes. */
static int vnni_add_ones_channel(uint8_t *packed, int n, int kp, int bits) {
  const int groups = kp / 4, nb = (n + 15) / 16, j = n % 16;
  int g;
  (void)bits; /* one layout for every width */
  if (j == 0) return 0;
  for (g = 0; g < groups; ++g) memset(packed + ((size_t)(nb - 1) * groups + g) * 64 + j * 4, 1, 4);
  return 1;
}

/* The GEMM arguments as locals: stores through y must not force reloads of every field. */
typedef struct {
  const uint8_t *x, *w;
  size_t ldx, ldy, ldacc, bstride;
  int groups, n, nb, wide, ones_lane;
  __mmask16 last_mask; /* channels of the last block */
  const int32_t *rx;
  const float *rt, *ct;
  float alpha, c_rx;
  float *y;
  int32_t *acc;
} vnni_ctx;

/* One tile: R rows x C blocks from block b0. rt/rx: this tile's rows; with find_rx (the chunk holding the ones
 * channel) they are outputs, filled from that channel before the epilogue. */
EK_INLINE void vnni_tile(const vnni_ctx *a, int m0, const int R, int b0, const int C, float *rt, int32_t *rx,
                         const int find_rx) {
  const uint8_t *x = a->x + (size_t)m0 * a->ldx;
  const uint8_t *w = a->w + (size_t)b0 * a->bstride;
  __m512i acc[VNNI_MR][4];
  int r, c, g;
#pragma GCC unroll 8
  for (r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_si512();
  for (g = 0; g < a->groups; ++g) {
    __m512i wv[4];
#pragma GCC unroll 4
    for (c = 0; c < C; ++c) wv[c] = _mm512_loadu_si512((const void *)(w + c * a->bstride + (size_t)g * 64));
#pragma GCC unroll 8
    for (r = 0; r < R; ++r) {
      __m512i xb = _mm512_set1_epi32((int)ek_load_u32(x + (size_t)r * a->ldx + (size_t)g * 4));
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) acc[r][c] = dpbusd(acc[r][c], xb, wv[c]);
    }
  }
  if (find_rx) {
    const __m512i lane = _mm512_set1_epi32(a->ones_lane);
#pragma GCC unroll 8
    for (r = 0; r < R; ++r) {
      rx[r] = _mm_cvtsi128_si32(_mm512_castsi512_si128(_mm512_permutexvar_epi32(lane, acc[r][C - 1])));
      rt[r] = a->c_rx * (float)rx[r]; /* as the caller would have */
    }
  }
#pragma GCC unroll 8
  for (r = 0; r < R; ++r) {
    const int row = m0 + r;
    if (a->wide) {
      const __m512i corr = _mm512_set1_epi32(128 * rx[r]);
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) acc[r][c] = _mm512_add_epi32(acc[r][c], corr);
    }
    if (a->y) {
      const __m512 rowadd = _mm512_set1_ps(rt[r]), alpha = _mm512_set1_ps(a->alpha);
      float *yr = a->y + (size_t)row * a->ldy;
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) {
        const int ch = (b0 + c) * 16;
        const __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][c]), alpha,
                                         _mm512_add_ps(rowadd, _mm512_loadu_ps(a->ct + ch)));
        if (b0 + c == a->nb - 1)
          _mm512_mask_storeu_ps(yr + ch, a->last_mask, f);
        else
          _mm512_storeu_ps(yr + ch, f);
      }
    } else {
      int32_t *ar = a->acc + (size_t)row * a->ldacc;
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) {
        const int ch = (b0 + c) * 16;
        if (b0 + c == a->nb - 1)
          _mm512_mask_storeu_epi32(ar + ch, a->last_mask, acc[r][c]);
        else
          _mm512_storeu_si512((void *)(ar + ch), acc[r][c]);
      }
    }
  }
}

/* All channel blocks of rows m0..m0+R-1. With a ones channel the last chunk goes first: it yields RX. */
EK_INLINE void vnni_rows(const vnni_ctx *a, int m0, const int R) {
  const int last = (a->nb - 1) / VNNI_NC * VNNI_NC;
  float rt_own[VNNI_MR];
  int32_t rx_own[VNNI_MR];
  float *rt = (float *)(uintptr_t)(a->rt ? a->rt + m0 : NULL);
  int32_t *rx = (int32_t *)(uintptr_t)(a->rx ? a->rx + m0 : NULL);
  int b0;
  if (a->ones_lane >= 0) {
    rt = rt_own;
    rx = rx_own;
    switch (a->nb - last) {
    case 4: vnni_tile(a, m0, R, last, 4, rt, rx, 1); break;
    case 3: vnni_tile(a, m0, R, last, 3, rt, rx, 1); break;
    case 2: vnni_tile(a, m0, R, last, 2, rt, rx, 1); break;
    default: vnni_tile(a, m0, R, last, 1, rt, rx, 1); break;
    }
    for (b0 = 0; b0 < last; b0 += VNNI_NC) vnni_tile(a, m0, R, b0, VNNI_NC, rt, rx, 0);
    return;
  }
  for (b0 = 0; b0 < a->nb; b0 += VNNI_NC) {
    switch (ek_min(VNNI_NC, a->nb - b0)) {
    case 4: vnni_tile(a, m0, R, b0, 4, rt, rx, 0); break;
    case 3: vnni_tile(a, m0, R, b0, 3, rt, rx, 0); break;
    case 2: vnni_tile(a, m0, R, b0, 2, rt, rx, 0); break;
    default: vnni_tile(a, m0, R, b0, 1, rt, rx, 0); break;
    }
  }
}

static void vnni_gemm(const ek_gemm_args *a) {
  const int nb = (a->n + 15) / 16;
  int m0 = 0;
  vnni_ctx A;
  A.x = a->x;
  A.w = a->w;
  A.ldx = a->ldx;
  A.ldy = a->ldy;
  A.ldacc = a->ldacc;
  A.groups = a->kp / 4;
  A.bstride = (size_t)A.groups * 64;
  A.n = a->n;
  A.nb = nb;
  A.wide = a->bits == 8;
  A.ones_lane = a->ones_channel ? a->n % 16 : -1;
  A.last_mask = (__mmask16)((1u << (a->n - (nb - 1) * 16)) - 1u);
  A.rx = a->rx;
  A.rt = a->rt;
  A.ct = a->ct;
  A.alpha = a->alpha;
  A.c_rx = a->c_rx;
  A.y = a->y;
  A.acc = a->acc;
  for (; m0 + VNNI_MR <= a->m; m0 += VNNI_MR) vnni_rows(&A, m0, VNNI_MR);
  for (; m0 < a->m; ++m0) vnni_rows(&A, m0, 1);
}

/* Quantizer constants in registers. */
typedef struct {
  __m512 lo, hi, step, rstep, nlr, zero, levels, thr;
  __m512 nlr_up, top_up, band; /* the floor form (vnni_floor_guess) */
  int fast;
} vnni_q;

EK_INLINE vnni_q vnni_q_make(const ek_qparams *q) {
  vnni_q c;
  c.lo = _mm512_set1_ps(q->lo);
  c.hi = _mm512_set1_ps(q->hi);
  c.step = _mm512_set1_ps(q->step);
  c.rstep = _mm512_set1_ps(q->rstep);
  c.nlr = _mm512_set1_ps(q->nlr);
  c.zero = _mm512_setzero_ps();
  c.levels = _mm512_set1_ps((float)q->levels);
  c.thr = _mm512_set1_ps(0.5f - EK_NEAR_HALF);
  c.nlr_up = _mm512_set1_ps(q->nlr + (0.5f + EK_NEAR_HALF));
  c.top_up = _mm512_set1_ps((float)q->levels + (0.5f + EK_NEAR_HALF));
  c.band = _mm512_set1_ps(2.0f * EK_NEAR_HALF);
  c.fast = q->fast;
  return c;
}

/* The guess g of the quotient (see ek_internal.h for exactness); lanes of mask whose g lies too close to a .5
 * boundary are flagged in *near. */
EK_INLINE __m512 vnni_guess(const vnni_q *c, __m512 v, __mmask16 mask, __mmask16 *near) {
  __m512 g;
  if (c->fast) /* max_ps returns its second operand for NaN: NaN gives code 0 */
    g = _mm512_min_ps(_mm512_max_ps(_mm512_fmadd_ps(v, c->rstep, c->nlr), c->zero), c->levels);
  else
    g = _mm512_mul_ps(_mm512_sub_ps(_mm512_min_ps(_mm512_max_ps(v, c->lo), c->hi), c->lo), c->rstep);
  /* VREDUCEPS: g - round_half_even(g) in one instruction */
  *near = _mm512_mask_cmp_ps_mask(mask, _mm512_abs_ps(_mm512_reduce_ps(g, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)),
                                  c->thr, _CMP_NLT_UQ);
  return g;
}

/* Codes (int32 lanes) of g, round half to even whatever MXCSR says; flagged lanes redone with the division. */
EK_INLINE __m512i vnni_round(const vnni_q *c, __m512 g, __m512 v, __mmask16 near) {
  __m512i ci = _mm512_cvt_roundps_epi32(g, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  if (near) {
    const __m512 t = _mm512_sub_ps(_mm512_min_ps(_mm512_max_ps(v, c->lo), c->hi), c->lo);
    ci = _mm512_mask_cvt_roundps_epi32(ci, near, _mm512_div_ps(t, c->step), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  return ci;
}

/* Codes of the lanes of v selected by mask as 16 bytes (other lanes 0). */
EK_INLINE __m128i vnni_codes16(const vnni_q *c, __m512 v, __mmask16 mask) {
  __mmask16 near;
  const __m512 g = vnni_guess(c, v, mask, &near);
  return _mm512_maskz_cvtepi32_epi8(mask, vnni_round(c, g, v, near));
}

EK_INLINE __mmask16 vnni_mask(int left) {
  return left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
}

/* Codes of the fast form in two instructions fewer than vnni_guess + vnni_round (no clamp at 0, no |.|): with
 * h = fma(v, rstep, nlr + 0.5 + E) (E = EK_NEAR_HALF), capped at L + 0.5 + E, the code is floor(h) unless
 * h - floor(h) < 2E. Why: h lies within 2^-12 (< E) of quotient + 0.5 + E (the fast bound of ek_internal.h, plus
 * half an ulp for adding 0.5 + E to nlr, whose magnitude is at most 512), so h - floor(h) >= 2E puts the quotient
 * + 0.5 strictly inside (floor(h), floor(h) + 1): no tie, and round half to even gives floor(h). Lanes inside the
 * band (including NaN, unordered) are redone with the division. Below the range floor(h) is negative and the
 * caller's saturating packs make it 0, as the clamp would (beyond the int32 range the conversion gives INT_MIN,
 * also 0: h - floor(h) is then 0, in the band, so such lanes are redone anyway). min_ps returns its second
 * operand for NaN, so a NaN stays NaN. Round-down in VREDUCEPS and the conversion regardless of MXCSR. */
EK_INLINE __m512i vnni_floor_codes(const vnni_q *c, __m512 v) {
  const __m512 h = _mm512_min_ps(c->top_up, _mm512_fmadd_ps(v, c->rstep, c->nlr_up));
  const __mmask16 near = _mm512_cmp_ps_mask(_mm512_reduce_ps(h, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), c->band,
                                            _CMP_NGE_UQ);
  __m512i ci = _mm512_cvt_roundps_epi32(h, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  if (near) {
    const __m512 t = _mm512_sub_ps(_mm512_min_ps(_mm512_max_ps(v, c->lo), c->hi), c->lo);
    ci = _mm512_mask_cvt_roundps_epi32(ci, near, _mm512_div_ps(t, c->step), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  return ci;
}

/* n contiguous floats to n codes, 64 at a time (one 4-register pack instead of four narrowing stores). */
static void vnni_quantize_flat(const float *x, size_t n, const vnni_q *c, uint8_t *codes) {
  const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  size_t i = 0;
  if (c->fast)
    for (; i + 64 <= n; i += 64) {
      const __m512i a = vnni_floor_codes(c, _mm512_loadu_ps(x + i));
      const __m512i b = vnni_floor_codes(c, _mm512_loadu_ps(x + i + 16));
      const __m512i d = vnni_floor_codes(c, _mm512_loadu_ps(x + i + 32));
      const __m512i e = vnni_floor_codes(c, _mm512_loadu_ps(x + i + 48));
      _mm512_storeu_si512((void *)(codes + i),
                          _mm512_permutexvar_epi32(perm, _mm512_packus_epi16(_mm512_packus_epi32(a, b),
                                                                             _mm512_packus_epi32(d, e))));
    }
  for (; i + 64 <= n; i += 64) {
    const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
    const __m512 v2 = _mm512_loadu_ps(x + i + 32), v3 = _mm512_loadu_ps(x + i + 48);
    __mmask16 n0, n1, n2, n3;
    const __m512 g0 = vnni_guess(c, v0, 0xffff, &n0), g1 = vnni_guess(c, v1, 0xffff, &n1);
    const __m512 g2 = vnni_guess(c, v2, 0xffff, &n2), g3 = vnni_guess(c, v3, 0xffff, &n3);
    const __m512i a = vnni_round(c, g0, v0, n0), b = vnni_round(c, g1, v1, n1);
    const __m512i d = vnni_round(c, g2, v2, n2), e = vnni_round(c, g3, v3, n3);
    /* The packs interleave 128-bit lanes; one dword permute restores the order. */
    _mm512_storeu_si512((void *)(codes + i),
                        _mm512_permutexvar_epi32(perm, _mm512_packus_epi16(_mm512_packus_epi32(a, b),
                                                                           _mm512_packus_epi32(d, e))));
  }
  for (; i < n; i += 16) {
    const __mmask16 mask = vnni_mask((int)(n - i < 16 ? n - i : 16));
    _mm_mask_storeu_epi8(codes + i, mask, vnni_codes16(c, _mm512_maskz_loadu_ps(mask, x + i), mask));
  }
}

/* Code sums of m rows of k bytes (row stride ld): per row, byte sums of 8-byte chunks (VPSADBW); eight rows at
 * a time are then reduced together by a transposing add tree. */
EK_INLINE __m512i vnni_row_partials(const uint8_t *row, int k) {
  const __m512i zero = _mm512_setzero_si512();
  __m512i s = zero;
  int i;
  for (i = 0; i < k; i += 64) {
    const int left = k - i;
    const __mmask64 mask = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
    s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_maskz_loadu_epi8(mask, row + i), zero));
  }
  return s;
}

EK_INLINE __m512i vnni_pair_add(__m512i a, __m512i b) {
  return _mm512_add_epi64(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

EK_INLINE __m512i vnni_lane_add(__m512i a, __m512i b) {
  return _mm512_add_epi64(_mm512_shuffle_i64x2(a, b, 0x88), _mm512_shuffle_i64x2(a, b, 0xdd));
}

static void vnni_row_sums(const uint8_t *codes, size_t ld, int m, int k, int32_t *rowsum) {
  int r = 0;
  for (; r + 8 <= m; r += 8) {
    const uint8_t *c = codes + (size_t)r * ld;
    __m512i s0 = vnni_row_partials(c, k), s1 = vnni_row_partials(c + ld, k);
    __m512i s2 = vnni_row_partials(c + 2 * ld, k), s3 = vnni_row_partials(c + 3 * ld, k);
    __m512i s4 = vnni_row_partials(c + 4 * ld, k), s5 = vnni_row_partials(c + 5 * ld, k);
    __m512i s6 = vnni_row_partials(c + 6 * ld, k), s7 = vnni_row_partials(c + 7 * ld, k);
    __m512i t = vnni_lane_add(vnni_lane_add(vnni_pair_add(s0, s1), vnni_pair_add(s2, s3)),
                              vnni_lane_add(vnni_pair_add(s4, s5), vnni_pair_add(s6, s7)));
    _mm256_storeu_si256((__m256i *)(void *)(rowsum + r), _mm512_cvtepi64_epi32(t)); /* qword i = row r + i */
  }
  for (; r < m; ++r) rowsum[r] = (int32_t)_mm512_reduce_add_epi64(vnni_row_partials(codes + (size_t)r * ld, k));
}

static void vnni_quantize_rows(const float *x, size_t ldx, int m, int k, int kp, const ek_qparams *q,
                               uint8_t *codes, size_t ldc, int32_t *rowsum) {
  const vnni_q c = vnni_q_make(q);
  const __m128i zero = _mm_setzero_si128();
  int r, i;
  if (!q->valid) {
    ek_scalar_quantize_rows(x, ldx, m, k, kp, q, codes, ldc, rowsum);
    return;
  }
  if (k == kp && (ldx == (size_t)k || m == 1) && (ldc == (size_t)k || m == 1)) {
    /* No padding and contiguous rows: one stream. */
    vnni_quantize_flat(x, (size_t)m * k, &c, codes);
    if (rowsum) vnni_row_sums(codes, (size_t)k, m, k, rowsum);
    return;
  }
  for (r = 0; r < m; ++r) {
    const float *xr = x + (size_t)r * ldx;
    uint8_t *cr = codes + (size_t)r * ldc;
    __m128i sum = zero;
    for (i = 0; i < k; i += 16) {
      const __mmask16 mask = vnni_mask(k - i);
      __m128i b = vnni_codes16(&c, _mm512_maskz_loadu_ps(mask, xr + i), mask);
      sum = _mm_add_epi64(sum, _mm_sad_epu8(b, zero));
      if (kp - i >= 16)
        _mm_storeu_si128((__m128i *)(void *)(cr + i), b);
      else
        _mm_mask_storeu_epi8(cr + i, vnni_mask(kp - i), b);
    }
    if (i < kp) memset(cr + i, 0, (size_t)(kp - i));
    if (rowsum) rowsum[r] = (int32_t)(_mm_cvtsi128_si64(sum) + _mm_extract_epi64(sum, 1));
  }
}

/* Four 16-byte rows as one zmm, row 0 in the low 128 bits. */
EK_INLINE __m512i vnni_join4(__m128i a, __m128i b, __m128i c, __m128i d) {
  __m512i z = _mm512_castsi128_si512(a);
  z = _mm512_inserti32x4(z, b, 1);
  z = _mm512_inserti32x4(z, c, 2);
  return _mm512_inserti32x4(z, d, 3);
}

/* One packed group (16 channels x 4 codes): channel sums, then the stored (signed) form. */
EK_INLINE void vnni_put_group(__m512i grp, __m512i *cbacc, __m512i flip, uint8_t *dst) {
  *cbacc = _mm512_dpbusd_epi32(*cbacc, grp, _mm512_set1_epi8(1));
  _mm512_storeu_si512((void *)dst, _mm512_xor_si512(grp, flip));
}

static void vnni_prepare_b(const float *b, int n, int k, int kp, int b_transposed, const ek_qparams *q, int bits,
                           uint8_t *tmp, uint8_t *packed, int32_t *cb) {
  const int groups = kp / 4, nb = (n + 15) / 16;
  const __m512i flip = _mm512_set1_epi8(bits == 8 ? (char)0x80 : 0);
  const vnni_q c = vnni_q_make(q);
  int blk, g, j;
  if (b_transposed) {
    /* B rows are channels: quantize 16 rows x 16 k, then transpose the 16 x 4 dwords in registers. */
    for (blk = 0; blk < nb; ++blk) {
      const int rows = ek_min(16, n - blk * 16);
      __m512i cbacc = _mm512_setzero_si512();
      int k0;
      for (k0 = 0; k0 < kp; k0 += 16) {
        const __mmask16 mask = vnni_mask(k - k0);
        __m128i rv[16];
        __m512i z0, z1, z2, z3, t0, t1, t2, t3, grp[4];
        for (j = 0; j < 16; ++j)
          rv[j] = j < rows ? vnni_codes16(&c, _mm512_maskz_loadu_ps(mask, b + (size_t)(blk * 16 + j) * k + k0), mask)
                           : _mm_setzero_si128();
        /* 128-bit lane l of z_a holds row 4l + a, so the in-lane 4 x 4 transpose leaves channels in order. */
        z0 = vnni_join4(rv[0], rv[4], rv[8], rv[12]);
        z1 = vnni_join4(rv[1], rv[5], rv[9], rv[13]);
        z2 = vnni_join4(rv[2], rv[6], rv[10], rv[14]);
        z3 = vnni_join4(rv[3], rv[7], rv[11], rv[15]);
        t0 = _mm512_unpacklo_epi32(z0, z1);
        t1 = _mm512_unpackhi_epi32(z0, z1);
        t2 = _mm512_unpacklo_epi32(z2, z3);
        t3 = _mm512_unpackhi_epi32(z2, z3);
        grp[0] = _mm512_unpacklo_epi64(t0, t2);
        grp[1] = _mm512_unpackhi_epi64(t0, t2);
        grp[2] = _mm512_unpacklo_epi64(t1, t3);
        grp[3] = _mm512_unpackhi_epi64(t1, t3);
        for (g = 0; g < 4 && k0 / 4 + g < groups; ++g)
          vnni_put_group(grp[g], &cbacc, flip, packed + ((size_t)blk * groups + k0 / 4 + g) * 64);
      }
      _mm512_storeu_si512((void *)(cb + blk * 16), cbacc);
    }
  } else {
    /* B is k x n: codes in that order, then 4 rows x 16 columns interleaved into each group. */
    vnni_quantize_rows(b, (size_t)k * n, 1, k * n, k * n, q, tmp, (size_t)k * n, NULL);
    for (blk = 0; blk < nb; ++blk) {
      const __mmask16 cols = vnni_mask(n - blk * 16);
      __m512i cbacc = _mm512_setzero_si512();
      for (g = 0; g < groups; ++g) {
        __m128i r[4], lo01, hi01, lo23, hi23;
        for (j = 0; j < 4; ++j) {
          int row = g * 4 + j;
          r[j] = row < k ? _mm_maskz_loadu_epi8(cols, tmp + (size_t)row * n + blk * 16) : _mm_setzero_si128();
        }
        lo01 = _mm_unpacklo_epi8(r[0], r[1]);
        hi01 = _mm_unpackhi_epi8(r[0], r[1]);
        lo23 = _mm_unpacklo_epi8(r[2], r[3]);
        hi23 = _mm_unpackhi_epi8(r[2], r[3]);
        vnni_put_group(vnni_join4(_mm_unpacklo_epi16(lo01, lo23), _mm_unpackhi_epi16(lo01, lo23),
                                  _mm_unpacklo_epi16(hi01, hi23), _mm_unpackhi_epi16(hi01, hi23)),
                       &cbacc, flip, packed + ((size_t)blk * groups + g) * 64);
      }
      _mm512_storeu_si512((void *)(cb + blk * 16), cbacc);
    }
  }
}

const ek_ops ek_ops_avx512vnni = {EDGESR_ISA_AVX512_VNNI, 4, vnni_packed_size, vnni_pack, vnni_gemm,
                                  vnni_quantize_rows, vnni_prepare_b,
                                  vnni_add_ones_channel};

#else
typedef int ek_avx512vnni_unused; /* not an x86-64 build: nothing to compile */
#endif
