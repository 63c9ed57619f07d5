/* AArch64 baseline NEON path (Armv8.0-A: no extra flags).
 *
 * Weights: n rows of kp codes (K padded to 16). A tile is 4 rows x 4 channels, one uint32x4 accumulator per
 * pair: UMULL/UMULL2 multiply 16 code pairs into uint16 and UADALP adds adjacent products into uint32.
 * Up to 7 bits two products fit uint16 (2 * 127 * 127), so UMLAL2 folds the second half in first.
 * Edge tiles repeat the last row/channel and store only the valid part.
 */
#include "ek_internal.h"

#ifdef EK_HAVE_NEON
#include "ek_neon_common.h"

static size_t neon_packed_size(int n, int kp, int bits) {
  (void)bits;
  return (size_t)n * (size_t)kp;
}

static void neon_pack(const uint8_t *codes, int n, int kp, int bits, uint8_t *dst) {
  (void)bits;
  memcpy(dst, codes, (size_t)n * (size_t)kp);
}

static void neon_gemm(const ek_gemm_args *a) {
  const int narrow = a->bits <= 7;
  int m0, n0, r, c, kk;
  for (m0 = 0; m0 < a->m; m0 += 4) {
    const uint8_t *xr[4];
    for (r = 0; r < 4; ++r) xr[r] = a->x + (size_t)ek_min(m0 + r, a->m - 1) * a->ldx;
    for (n0 = 0; n0 < a->n; n0 += 4) {
      const uint8_t *wr[4];
      uint32x4_t acc[4][4];
      for (c = 0; c < 4; ++c) wr[c] = a->w + (size_t)ek_min(n0 + c, a->n - 1) * a->kp;
      for (r = 0; r < 4; ++r)
        for (c = 0; c < 4; ++c) acc[r][c] = vdupq_n_u32(0);
      for (kk = 0; kk < a->kp; kk += 16) {
        uint8x16_t xv[4], wv[4];
        for (r = 0; r < 4; ++r) xv[r] = vld1q_u8(xr[r] + kk);
        for (c = 0; c < 4; ++c) wv[c] = vld1q_u8(wr[c] + kk);
        if (narrow) {
          for (r = 0; r < 4; ++r)
            for (c = 0; c < 4; ++c) {
              uint16x8_t p = vmull_u8(vget_low_u8(xv[r]), vget_low_u8(wv[c]));
              p = vmlal_high_u8(p, xv[r], wv[c]);
              acc[r][c] = vpadalq_u16(acc[r][c], p);
            }
        } else {
          for (r = 0; r < 4; ++r)
            for (c = 0; c < 4; ++c) {
              acc[r][c] = vpadalq_u16(acc[r][c], vmull_u8(vget_low_u8(xv[r]), vget_low_u8(wv[c])));
              acc[r][c] = vpadalq_u16(acc[r][c], vmull_high_u8(xv[r], wv[c]));
            }
        }
      }
      for (r = 0; r < 4 && m0 + r < a->m; ++r) {
        uint32x4_t s = vpaddq_u32(vpaddq_u32(acc[r][0], acc[r][1]), vpaddq_u32(acc[r][2], acc[r][3]));
        ek_neon_store4(a, m0 + r, n0, s);
      }
    }
  }
}

static void neon_quantize_rows(const float *x, size_t ldx, int m, int k, int kp, const ek_qparams *q,
                               uint8_t *codes, size_t ldc, int32_t *rowsum) {
  ek_neon_quantize_rows(x, ldx, m, k, kp, q, codes, ldc, rowsum);
}

const ek_ops ek_ops_neon = {EDGESR_ISA_NEON, 16, neon_packed_size, neon_pack, neon_gemm, neon_quantize_rows, NULL, NULL};

#else
typedef int ek_neon_unused; /* not an AArch64 build: nothing to compile */
#endif
