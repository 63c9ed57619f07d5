/* Portable scalar reference path: the definition every vector path is tested against. */
#include "ek_internal.h"

void ek_scalar_quantize_rows(const float *x, size_t ldx, int m, int k, int kp, const ek_qparams *q, uint8_t *codes,
                             size_t ldc, int32_t *rowsum) {
  int r, i;
  for (r = 0; r < m; ++r) {
    const float *xr = x + (size_t)r * ldx;
    uint8_t *cr = codes + (size_t)r * ldc;
    int32_t s = 0;
    for (i = 0; i < k; ++i) {
      cr[i] = ek_quant1(xr[i], q);
      s += cr[i];
    }
    for (; i < kp; ++i) cr[i] = 0;
    if (rowsum) rowsum[r] = s;
  }
}

/* Layout: n rows of kp codes, as given. */
static size_t scalar_packed_size(int n, int kp, int bits) {
  (void)bits;
  return (size_t)n * (size_t)kp;
}

static void scalar_pack(const uint8_t *codes, int n, int kp, int bits, uint8_t *dst) {
  (void)bits;
  memcpy(dst, codes, (size_t)n * (size_t)kp);
}

static void scalar_gemm(const ek_gemm_args *a) {
  int i, j, kk;
  for (i = 0; i < a->m; ++i) {
    const uint8_t *xr = a->x + (size_t)i * a->ldx;
    for (j = 0; j < a->n; ++j) {
      const uint8_t *wr = a->w + (size_t)j * a->kp;
      int32_t s = 0;
      for (kk = 0; kk < a->kp; ++kk) s += (int32_t)xr[kk] * (int32_t)wr[kk];
      if (a->y)
        a->y[(size_t)i * a->ldy + j] = fmaf(a->alpha, (float)s, a->rt[i] + a->ct[j]);
      else
        a->acc[(size_t)i * a->ldacc + j] = s;
    }
  }
}

const ek_ops ek_ops_scalar = {EDGESR_ISA_SCALAR, 4, scalar_packed_size, scalar_pack, scalar_gemm,
                              ek_scalar_quantize_rows, NULL, NULL};
