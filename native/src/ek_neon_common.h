/* AArch64 NEON helpers shared (as static inline copies) by the three AArch64 translation units, each compiled
 * with its own -march: the activation quantizer and the float/int epilogue of 4 channels. */
#ifndef EK_NEON_COMMON_H
#define EK_NEON_COMMON_H

#include <arm_neon.h>

#include "ek_internal.h"

/* Codes of 4 floats (see ek_internal.h: reciprocal guess, true division near .5). NaN gives code 0. */
EK_INLINE uint32x4_t ek_neon_codes4(float32x4_t v, const ek_qparams *q) {
  const float32x4_t lo = vdupq_n_f32(q->lo);
  float32x4_t g, c;
  uint32x4_t near;
  if (q->fast) /* FMAXNM/FMINNM return the number when one operand is NaN: NaN gives code 0 */
    g = vminnmq_f32(vmaxnmq_f32(vfmaq_f32(vdupq_n_f32(q->nlr), v, vdupq_n_f32(q->rstep)), vdupq_n_f32(0.0f)),
                    vdupq_n_f32((float)q->levels));
  else
    g = vmulq_f32(vsubq_f32(vminnmq_f32(vmaxnmq_f32(v, lo), vdupq_n_f32(q->hi)), lo), vdupq_n_f32(q->rstep));
  c = vrndnq_f32(g);
  /* not (|g - c| < thr): also true for NaN */
  near = vmvnq_u32(vcltq_f32(vabdq_f32(g, c), vdupq_n_f32(0.5f - EK_NEAR_HALF)));
  if (vmaxvq_u32(near)) {
    const float32x4_t t = vsubq_f32(vminnmq_f32(vmaxnmq_f32(v, lo), vdupq_n_f32(q->hi)), lo);
    c = vbslq_f32(near, vrndnq_f32(vdivq_f32(t, vdupq_n_f32(q->step))), c);
  }
  return vcvtq_u32_f32(c);
}

EK_INLINE void ek_neon_quantize_rows(const float *x, size_t ldx, int m, int k, int kp, const ek_qparams *q,
                                     uint8_t *codes, size_t ldc, int32_t *rowsum) {
  int r, i;
  if (!q->valid) {
    ek_scalar_quantize_rows(x, ldx, m, k, kp, q, codes, ldc, rowsum);
    return;
  }
  for (r = 0; r < m; ++r) {
    const float *xr = x + (size_t)r * ldx;
    uint8_t *cr = codes + (size_t)r * ldc;
    uint32x4_t sum = vdupq_n_u32(0);
    for (i = 0; i < k; i += 16) {
      const int left = k - i;
      uint32x4_t c0, c1, c2, c3;
      uint8x16_t b;
      if (left >= 16) {
        c0 = ek_neon_codes4(vld1q_f32(xr + i), q);
        c1 = ek_neon_codes4(vld1q_f32(xr + i + 4), q);
        c2 = ek_neon_codes4(vld1q_f32(xr + i + 8), q);
        c3 = ek_neon_codes4(vld1q_f32(xr + i + 12), q);
        b = vcombine_u8(vmovn_u16(vcombine_u16(vmovn_u32(c0), vmovn_u32(c1))),
                        vmovn_u16(vcombine_u16(vmovn_u32(c2), vmovn_u32(c3))));
      } else {
        float tmp[16];
        uint8_t keep[16];
        int j;
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, xr + i, sizeof(float) * (size_t)left);
        for (j = 0; j < 16; ++j) keep[j] = j < left ? 0xff : 0;
        c0 = ek_neon_codes4(vld1q_f32(tmp), q);
        c1 = ek_neon_codes4(vld1q_f32(tmp + 4), q);
        c2 = ek_neon_codes4(vld1q_f32(tmp + 8), q);
        c3 = ek_neon_codes4(vld1q_f32(tmp + 12), q);
        b = vcombine_u8(vmovn_u16(vcombine_u16(vmovn_u32(c0), vmovn_u32(c1))),
                        vmovn_u16(vcombine_u16(vmovn_u32(c2), vmovn_u32(c3))));
        b = vandq_u8(b, vld1q_u8(keep));
      }
      sum = vpadalq_u16(sum, vpaddlq_u8(b));
      if (kp - i >= 16) {
        vst1q_u8(cr + i, b);
      } else {
        uint8_t tmpb[16];
        vst1q_u8(tmpb, b);
        memcpy(cr + i, tmpb, (size_t)(kp - i));
      }
    }
    if (i < kp) memset(cr + i, 0, (size_t)(kp - i));
    if (rowsum) rowsum[r] = (int32_t)vaddvq_u32(sum);
  }
}

/* Stores the accumulators of channels ch..ch+3 of one row (fewer at the right edge). */
EK_INLINE void ek_neon_store4(const ek_gemm_args *a, int row, int ch, uint32x4_t v) {
  const int left = a->n - ch;
  if (left <= 0) return;
  if (a->y) {
    const float32x4_t f = vfmaq_f32(vaddq_f32(vdupq_n_f32(a->rt[row]), vld1q_f32(a->ct + ch)), vcvtq_f32_u32(v),
                                    vdupq_n_f32(a->alpha));
    if (left >= 4) {
      vst1q_f32(a->y + (size_t)row * a->ldy + ch, f);
    } else {
      float tmp[4];
      vst1q_f32(tmp, f);
      memcpy(a->y + (size_t)row * a->ldy + ch, tmp, sizeof(float) * (size_t)left);
    }
  } else {
    int32x4_t s = vreinterpretq_s32_u32(v);
    if (left >= 4) {
      vst1q_s32(a->acc + (size_t)row * a->ldacc + ch, s);
    } else {
      int32_t tmp[4];
      vst1q_s32(tmp, s);
      memcpy(a->acc + (size_t)row * a->ldacc + ch, tmp, sizeof(int32_t) * (size_t)left);
    }
  }
}

#endif /* EK_NEON_COMMON_H */
