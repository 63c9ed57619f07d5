/* AArch64 int8 matrix-multiply path (compiled with -march=armv8.6-a+i8mm).
 *
 * UMMLA multiplies a 2 x 8 block of activation codes (two rows) with a 2 x 8 block of weight codes (two
 * channels) and adds the 2 x 2 products into a uint32x4: unsigned x unsigned, exact for every width.
 * Weights: blocks of 8 channels; per block, per group of 8 k, four channel pairs of 2 x 8 codes (64 bytes).
 * A tile is 8 rows (4 pairs, loaded as two 8-byte halves) x 8 channels: 16 accumulators.
 */
#include "ek_internal.h"

#if defined(EK_HAVE_I8MM) && !defined(__ARM_FEATURE_MATMUL_INT8)
#error "ek_arm_i8mm.c needs -march=armv8.6-a+i8mm"
#endif

#ifdef EK_HAVE_I8MM
#include "ek_neon_common.h"

static size_t mm_packed_size(int n, int kp, int bits) {
  (void)bits;
  return (size_t)((n + 7) / 8) * 8u * (size_t)kp;
}

static void mm_pack(const uint8_t *codes, int n, int kp, int bits, uint8_t *dst) {
  const int nb = (n + 7) / 8, groups = kp / 8;
  int b, g, j, t;
  (void)bits;
  for (b = 0; b < nb; ++b)
    for (g = 0; g < groups; ++g) {
      uint8_t *d = dst + ((size_t)b * groups + g) * 64;
      for (j = 0; j < 8; ++j) { /* channel pair j/2, half j%2 */
        int ch = b * 8 + j;
        for (t = 0; t < 8; ++t) d[j * 8 + t] = ch < n ? codes[(size_t)ch * kp + g * 8 + t] : 0;
      }
    }
}

static void mm_gemm(const ek_gemm_args *a) {
  const int nb = (a->n + 7) / 8, groups = a->kp / 8;
  int m0, b, p, q, g;
  for (m0 = 0; m0 < a->m; m0 += 8) {
    const uint8_t *xr[8];
    for (p = 0; p < 8; ++p) xr[p] = a->x + (size_t)ek_min(m0 + p, a->m - 1) * a->ldx;
    for (b = 0; b < nb; ++b) {
      const uint8_t *wb = a->w + (size_t)b * groups * 64;
      uint32x4_t acc[4][4];
      for (p = 0; p < 4; ++p)
        for (q = 0; q < 4; ++q) acc[p][q] = vdupq_n_u32(0);
      for (g = 0; g < groups; ++g) {
        uint8x16_t xv[4], wv[4];
        for (p = 0; p < 4; ++p) xv[p] = vcombine_u8(vld1_u8(xr[2 * p] + g * 8), vld1_u8(xr[2 * p + 1] + g * 8));
        for (q = 0; q < 4; ++q) wv[q] = vld1q_u8(wb + (size_t)g * 64 + q * 16);
        for (p = 0; p < 4; ++p)
          for (q = 0; q < 4; ++q) acc[p][q] = vmmlaq_u32(acc[p][q], xv[p], wv[q]);
      }
      /* acc[p][q] = [r0.c0, r0.c1, r1.c0, r1.c1] for rows 2p, 2p+1 and channels 2q, 2q+1. */
      for (p = 0; p < 4; ++p) {
        const int row = m0 + 2 * p;
        uint64x2_t q0 = vreinterpretq_u64_u32(acc[p][0]), q1 = vreinterpretq_u64_u32(acc[p][1]);
        uint64x2_t q2 = vreinterpretq_u64_u32(acc[p][2]), q3 = vreinterpretq_u64_u32(acc[p][3]);
        if (row < a->m) {
          ek_neon_store4(a, row, b * 8, vreinterpretq_u32_u64(vzip1q_u64(q0, q1)));
          ek_neon_store4(a, row, b * 8 + 4, vreinterpretq_u32_u64(vzip1q_u64(q2, q3)));
        }
        if (row + 1 < a->m) {
          ek_neon_store4(a, row + 1, b * 8, vreinterpretq_u32_u64(vzip2q_u64(q0, q1)));
          ek_neon_store4(a, row + 1, b * 8 + 4, vreinterpretq_u32_u64(vzip2q_u64(q2, q3)));
        }
      }
    }
  }
}

static void mm_quantize_rows(const float *x, size_t ldx, int m, int k, int kp, const ek_qparams *q,
                             uint8_t *codes, size_t ldc, int32_t *rowsum) {
  ek_neon_quantize_rows(x, ldx, m, k, kp, q, codes, ldc, rowsum);
}

const ek_ops ek_ops_i8mm = {EDGESR_ISA_NEON_I8MM, 8, mm_packed_size, mm_pack, mm_gemm, mm_quantize_rows, NULL, NULL};

#else
typedef int ek_i8mm_unused; /* not an AArch64 build: nothing to compile */
#endif
