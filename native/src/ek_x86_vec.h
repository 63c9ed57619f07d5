/* AVX2 + FMA forms of the scalar math helpers of ek_internal.h, for the files that compile an AVX2 copy of
 * their loops with target attributes (where GCC leaves these loops scalar: the clamp and the float-to-int
 * conversion of ek_exp_approx keep it from vectorising them). Same steps, eight lanes. */
#ifndef EK_X86_VEC_H
#define EK_X86_VEC_H

#include "ek_internal.h"

#if defined(EK_X86) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* ek_exp_approx on 8 lanes. */
__attribute__((target("avx2,fma"))) static inline __m256 ek_exp8_avx2(__m256 x) {
  const __m256 magic = _mm256_set1_ps(EK_RNE_MAGIC);
  __m256 n, r, p;
  __m256i e;
  x = _mm256_max_ps(x, _mm256_set1_ps(-80.0f));
  n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504f), magic), magic);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
  p = _mm256_set1_ps(1.0f / 720.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

#endif /* EK_X86_VEC_H */
