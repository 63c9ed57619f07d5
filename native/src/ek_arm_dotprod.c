/* AArch64 dot-product path (compiled with -march=armv8.2-a+dotprod).
 *
 * Weights: blocks of 16 channels; per block, per group of 4 k, the 4 codes of each channel (64 bytes, four
 * q registers of 4 channels). UDOT (by element) multiplies one 4-code group of an activation row with the
 * 4 codes of 4 channels and adds into their uint32 lanes: unsigned x unsigned, exact for every width.
 * A tile is 4 rows x 16 channels (16 accumulators); K is padded to 16 so a row loads 4 groups at once.
 */
#include "ek_internal.h"

#if defined(EK_HAVE_DOTPROD) && !defined(__ARM_FEATURE_DOTPROD)
#error "ek_arm_dotprod.c needs -march=armv8.2-a+dotprod"
#endif

#ifdef EK_HAVE_DOTPROD
#include "ek_neon_common.h"

static size_t dot_packed_size(int n, int kp, int bits) {
  (void)bits;
  return (size_t)((n + 15) / 16) * 16u * (size_t)kp;
}

static void dot_pack(const uint8_t *codes, int n, int kp, int bits, uint8_t *dst) {
  const int nb = (n + 15) / 16, groups = kp / 4;
  int b, g, j, t;
  (void)bits;
  for (b = 0; b < nb; ++b)
    for (g = 0; g < groups; ++g) {
      uint8_t *d = dst + ((size_t)b * groups + g) * 64;
      for (j = 0; j < 16; ++j) {
        int ch = b * 16 + j;
        for (t = 0; t < 4; ++t) d[j * 4 + t] = ch < n ? codes[(size_t)ch * kp + g * 4 + t] : 0;
      }
    }
}

#define DOT_LANE(j)                                                                  \
  for (q = 0; q < 4; ++q) {                                                          \
    const uint8x16_t wv = vld1q_u8(wb + (size_t)(kk / 4 + (j)) * 64 + q * 16);       \
    for (r = 0; r < 4; ++r) acc[r][q] = vdotq_laneq_u32(acc[r][q], wv, xv[r], (j)); \
  }

static void dot_gemm(const ek_gemm_args *a) {
  const int nb = (a->n + 15) / 16, groups = a->kp / 4;
  int m0, b, r, q, kk;
  for (m0 = 0; m0 < a->m; m0 += 4) {
    const uint8_t *xr[4];
    for (r = 0; r < 4; ++r) xr[r] = a->x + (size_t)ek_min(m0 + r, a->m - 1) * a->ldx;
    for (b = 0; b < nb; ++b) {
      const uint8_t *wb = a->w + (size_t)b * groups * 64;
      uint32x4_t acc[4][4];
      for (r = 0; r < 4; ++r)
        for (q = 0; q < 4; ++q) acc[r][q] = vdupq_n_u32(0);
      for (kk = 0; kk < a->kp; kk += 16) {
        uint8x16_t xv[4];
        for (r = 0; r < 4; ++r) xv[r] = vld1q_u8(xr[r] + kk);
        DOT_LANE(0)
        DOT_LANE(1)
        DOT_LANE(2)
        DOT_LANE(3)
      }
      for (r = 0; r < 4 && m0 + r < a->m; ++r)
        for (q = 0; q < 4; ++q) ek_neon_store4(a, m0 + r, b * 16 + q * 4, acc[r][q]);
    }
  }
}

static void dot_quantize_rows(const float *x, size_t ldx, int m, int k, int kp, const ek_qparams *q,
                              uint8_t *codes, size_t ldc, int32_t *rowsum) {
  ek_neon_quantize_rows(x, ldx, m, k, kp, q, codes, ldc, rowsum);
}

const ek_ops ek_ops_dotprod = {EDGESR_ISA_NEON_DOTPROD, 16, dot_packed_size, dot_pack, dot_gemm, dot_quantize_rows, NULL, NULL};

#else
typedef int ek_dotprod_unused; /* not an AArch64 build: nothing to compile */
#endif
