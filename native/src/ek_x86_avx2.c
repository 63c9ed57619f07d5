/* x86-64 AVX2 + FMA path (compiled with -mavx2 -mfma).
 *
 * Codes up to 7 bits: blocks of 8 output channels; per block, per group of 4 k, the 4 codes of each channel
 * (32 bytes, one ymm). VPMADDUBSW multiplies a broadcast dword of 4 unsigned activation codes with the (signed)
 * weight codes and adds adjacent pairs into int16 (at most 2 * 127 * 127, no saturation), VPMADDWD with ones
 * adds the pairs into int32.
 * 8-bit codes would saturate VPMADDUBSW, so they are stored as int16 pairs instead (groups of 2 k, 8 channels,
 * 32 bytes) and multiplied with VPMADDWD: exact for every code.
 */
#include "ek_internal.h"

#ifdef EK_HAVE_AVX2
#include <immintrin.h>

#define AVX2_MR 4
#define AVX2_NC 2

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

/* Writes one row segment of 8 channels starting at channel ch. */
EK_INLINE void avx2_store(const ek_gemm_args *a, int row, int ch, __m256i v) {
  const int left = a->n - ch;
  if (a->y) {
    const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(a->alpha),
                                     _mm256_add_ps(_mm256_set1_ps(a->rt[row]), _mm256_loadu_ps(a->ct + ch)));
    if (left >= 8) {
      _mm256_storeu_ps(a->y + (size_t)row * a->ldy + ch, f);
    } else {
      float tmp[8];
      _mm256_storeu_ps(tmp, f);
      memcpy(a->y + (size_t)row * a->ldy + ch, tmp, sizeof(float) * (size_t)left);
    }
  } else {
    if (left >= 8) {
      _mm256_storeu_si256((__m256i *)(void *)(a->acc + (size_t)row * a->ldacc + ch), v);
    } else {
      int32_t tmp[8];
      _mm256_storeu_si256((__m256i *)(void *)tmp, v);
      memcpy(a->acc + (size_t)row * a->ldacc + ch, tmp, sizeof(int32_t) * (size_t)left);
    }
  }
}

EK_INLINE void avx2_tile(const ek_gemm_args *a, int m0, const int R, int b0, const int C) {
  const int wide = a->bits == 8;
  const int groups = wide ? a->kp / 2 : a->kp / 4;
  const uint8_t *x = a->x + (size_t)m0 * a->ldx;
  const uint8_t *w = a->w + (size_t)b0 * groups * 32;
  const size_t bstride = (size_t)groups * 32;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[AVX2_MR][AVX2_NC];
  int r, c, g;
#pragma GCC unroll 4
  for (r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_si256();
  if (wide) {
    for (g = 0; g < groups; ++g) {
      __m256i wv[AVX2_NC];
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) wv[c] = _mm256_loadu_si256((const __m256i *)(const void *)(w + c * bstride + (size_t)g * 32));
#pragma GCC unroll 4
      for (r = 0; r < R; ++r) {
        const uint8_t *p = x + (size_t)r * a->ldx + (size_t)g * 2;
        __m256i xb = _mm256_set1_epi32((int)((uint32_t)p[0] | ((uint32_t)p[1] << 16)));
#pragma GCC unroll 4
        for (c = 0; c < C; ++c) acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(xb, wv[c]));
      }
    }
  } else {
    for (g = 0; g < groups; ++g) {
      __m256i wv[AVX2_NC];
#pragma GCC unroll 4
      for (c = 0; c < C; ++c) wv[c] = _mm256_loadu_si256((const __m256i *)(const void *)(w + c * bstride + (size_t)g * 32));
#pragma GCC unroll 4
      for (r = 0; r < R; ++r) {
        __m256i xb = _mm256_set1_epi32((int)ek_load_u32(x + (size_t)r * a->ldx + (size_t)g * 4));
#pragma GCC unroll 4
        for (c = 0; c < C; ++c)
          acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, wv[c]), ones));
      }
    }
  }
#pragma GCC unroll 4
  for (r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (c = 0; c < C; ++c) avx2_store(a, m0 + r, (b0 + c) * 8, acc[r][c]);
}

#define AVX2_ROWS(R)                                  \
  for (b0 = 0; b0 < nb; b0 += AVX2_NC) {                   \
    if (nb - b0 >= 2)                                 \
      avx2_tile(a, m0, R, b0, 2);                     \
    else                                              \
      avx2_tile(a, m0, R, b0, 1);                     \
  }

static void avx2_gemm(const ek_gemm_args *a) {
  const int nb = (a->n + 7) / 8;
  int m0 = 0, b0;
  for (; m0 + AVX2_MR <= a->m; m0 += AVX2_MR) AVX2_ROWS(AVX2_MR)
  for (; m0 < a->m; ++m0) AVX2_ROWS(1)
}

/* Codes of 8 floats; lanes at or beyond `valid` give code 0. */
EK_INLINE __m256i avx2_codes8(__m256 v, const ek_qparams *q, int valid) {
  const __m256 lo = _mm256_set1_ps(q->lo), hi = _mm256_set1_ps(q->hi);
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 t = _mm256_sub_ps(_mm256_min_ps(_mm256_max_ps(v, lo), hi), lo);
  __m256 guess = _mm256_mul_ps(t, _mm256_set1_ps(q->rstep));
  __m256 c = _mm256_round_ps(guess, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 near = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(guess, c), absmask), _mm256_set1_ps(0.5f - EK_NEAR_HALF),
                              _CMP_NLT_UQ);
  __m256i ci;
  if (_mm256_movemask_ps(near)) {
    __m256 e = _mm256_round_ps(_mm256_div_ps(t, _mm256_set1_ps(q->step)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    c = _mm256_blendv_ps(c, e, near);
  }
  ci = _mm256_cvtps_epi32(c);
  if (valid < 8) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    ci = _mm256_and_si256(ci, _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), idx));
  }
  return ci;
}

static void avx2_quantize_rows(const float *x, size_t ldx, int m, int k, int kp, const ek_qparams *q, uint8_t *codes,
                               size_t ldc, int32_t *rowsum) {
  int r, i;
  if (!q->valid) {
    ek_scalar_quantize_rows(x, ldx, m, k, kp, q, codes, ldc, rowsum);
    return;
  }
  for (r = 0; r < m; ++r) {
    const float *xr = x + (size_t)r * ldx;
    uint8_t *cr = codes + (size_t)r * ldc;
    __m256i sum = _mm256_setzero_si256();
    __m128i s4;
    for (i = 0; i < k; i += 8) {
      const int left = k - i;
      __m256 v;
      __m256i ci;
      __m128i h, b8;
      if (left >= 8) {
        v = _mm256_loadu_ps(xr + i);
      } else {
        float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        memcpy(tmp, xr + i, sizeof(float) * (size_t)left);
        v = _mm256_loadu_ps(tmp);
      }
      ci = avx2_codes8(v, q, left);
      sum = _mm256_add_epi32(sum, ci);
      h = _mm_packs_epi32(_mm256_castsi256_si128(ci), _mm256_extracti128_si256(ci, 1));
      b8 = _mm_packus_epi16(h, h);
      if (kp - i >= 8) {
        _mm_storel_epi64((__m128i *)(void *)(cr + i), b8);
      } else {
        uint8_t tmp[16];
        _mm_storeu_si128((__m128i *)(void *)tmp, b8);
        memcpy(cr + i, tmp, (size_t)(kp - i));
      }
    }
    if (i < kp) memset(cr + i, 0, (size_t)(kp - i));
    if (rowsum) {
      s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
      rowsum[r] = _mm_cvtsi128_si32(s4);
    }
  }
}

const ek_ops ek_ops_avx2 = {EDGESR_ISA_AVX2, 4, avx2_packed_size, avx2_pack, avx2_gemm, avx2_quantize_rows, NULL, NULL};

#else
typedef int ek_avx2_unused; /* not an x86-64 build: nothing to compile */
#endif
