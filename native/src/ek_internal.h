/* edgesr native kernels: private declarations shared by the translation units of the library.
 *
 * Every ISA translation unit (ek_x86_*.c, ek_arm_*.c) is compiled with its own instruction-set flags and
 * exports one ek_ops table; ek_core.c picks a table at run time. Everything here is hidden from the
 * shared object's dynamic symbol table, so only the public edgesr_* API is exported.
 */
#ifndef EK_INTERNAL_H
#define EK_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edgesr_kernels.h"

#if defined(__GNUC__) || defined(__clang__)
#define EK_HIDDEN __attribute__((visibility("hidden")))
#define EK_INLINE static inline __attribute__((always_inline))
#define EK_RESTRICT __restrict__
#else
#define EK_HIDDEN
#define EK_INLINE static inline
#define EK_RESTRICT
#endif

#if defined(__x86_64__) || defined(_M_X64)
#define EK_X86 1
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#define EK_ARM64 1
#endif

/* ISA paths compiled into this build (a build can drop one with -DEDGESR_NO_<ISA>, e.g. for an old compiler). */
#if defined(EK_X86) && !defined(EDGESR_NO_AVX2)
#define EK_HAVE_AVX2 1
#endif
#if defined(EK_X86) && !defined(EDGESR_NO_AVX512VNNI)
#define EK_HAVE_AVX512VNNI 1
#endif
#if defined(EK_ARM64) && !defined(EDGESR_NO_NEON)
#define EK_HAVE_NEON 1
#endif
#if defined(EK_ARM64) && !defined(EDGESR_NO_DOTPROD)
#define EK_HAVE_DOTPROD 1
#endif
#if defined(EK_ARM64) && !defined(EDGESR_NO_I8MM)
#define EK_HAVE_I8MM 1
#endif

#define EK_MAX_THREADS 64

/* One per-tensor quantizer, with everything the vector code needs precomputed. */
typedef struct {
  float lo, hi;
  float step;  /* (hi - lo) / L in float32 */
  float rstep; /* 1 / step, only for a first guess: codes are decided by the true division (NaN: always divide) */
  float nlr;   /* -(lo * rstep), for the one-instruction guess fma(v, rstep, nlr) */
  int fast;    /* the fma guess is accurate enough (see below) */
  int levels;  /* L = 2^bits - 1 */
  int valid;   /* hi > lo (otherwise every code is 0) */
} ek_qparams;

/* Vector quantizers compute a guess g of the quotient (clamp(v, lo, hi) - lo) / step with a reciprocal, and
 * recompute with the true division every lane whose guess lies within EK_NEAR_HALF of a .5 boundary; elsewhere
 * round(g) is the code of the true quotient as long as |g - quotient| < EK_NEAR_HALF.
 *  - exact clamp and subtraction, then g = t * rstep: error < 3 * 2^-24 * 256 < 2^-14.
 *  - fast form g = fma(v, rstep, -lo * rstep) clamped to [0, L] (one instruction instead of three): error
 *    < (3 * max(|lo|, |hi|) * rstep + 256) * 2^-24 + 2^-15, used only when max(|lo|, |hi|) * rstep <= 512
 *    (always true when lo <= 0 <= hi), i.e. error < 1.5e-4, a third of the guard band. */
#define EK_NEAR_HALF 0.00048828125f /* 2^-11 */
#define EK_FAST_LIMIT 512.0f

EK_INLINE ek_qparams ek_make_qparams(float lower, float upper, int bits) {
  ek_qparams q;
  q.levels = (1 << bits) - 1;
  q.lo = lower;
  q.hi = upper;
  q.valid = upper > lower; /* false for NaN bounds too */
  q.step = (upper - lower) / (float)q.levels;
  q.fast = 0;
  q.nlr = 0.0f;
  if (!q.valid || !(q.step > 0.0f)) {
    q.valid = 0;
    q.step = 0.0f;
    q.rstep = 0.0f;
  } else {
    float a = fabsf(lower) > fabsf(upper) ? fabsf(lower) : fabsf(upper);
    q.rstep = 1.0f / q.step;
    if (!isfinite(q.rstep)) q.rstep = NAN; /* a NaN guess sends every lane to the division */
    q.nlr = -(lower * q.rstep);
    q.fast = isfinite(q.rstep) && isfinite(q.nlr) && a * q.rstep <= EK_FAST_LIMIT;
  }
  return q;
}

/* Round half to even, independent of the floating-point environment's rounding mode (0 <= v < 2^23). */
EK_INLINE float ek_rne(float v) {
  float f = floorf(v), d = v - f;
  if (d > 0.5f || (d == 0.5f && fmodf(f, 2.0f) != 0.0f)) f += 1.0f;
  return f;
}

/* The reference quantizer for one value (NaN maps to code 0). */
EK_INLINE uint8_t ek_quant1(float v, const ek_qparams *q) {
  float t;
  if (!q->valid) return 0;
  t = v > q->lo ? v : q->lo;
  t = t < q->hi ? t : q->hi;
  t = t - q->lo;
  return (uint8_t)(int)ek_rne(t / q->step);
}

/* Arguments of one integer GEMM call: acc[m][n] = sum_k x[m][k] * w[n][k] over the padded K, followed by
 * either the float epilogue y = fma(alpha, acc, rt[m] + ct[n]) (fused, so every path rounds alike) or a store of
 * the exact int32 accumulators. */
typedef struct {
  const uint8_t *x; /* activation codes: m rows of ldx bytes, zero padded from k to kp */
  size_t ldx;
  int m, k, kp, n;
  int bits;          /* code range the weights were packed for (8 selects the wide variants) */
  const int32_t *rx; /* per-row code sums over the real K (unused when ones_channel) */
  int ones_channel;  /* the packed weights carry a channel of ones at index n: the kernel takes RX from it and
                        computes rt itself as c_rx * RX (rx and rt are not read) */
  float c_rx;
  const uint8_t *w;  /* weights in the ISA's packed layout */
  float *y;          /* float output, or NULL */
  size_t ldy;
  float alpha;
  const float *rt; /* per row, m entries (c_rx * rx, unless ones_channel) */
  const float *ct; /* per column, padded with zeros to a multiple of 64 */
  int32_t *acc;    /* integer output, or NULL */
  size_t ldacc;
} ek_gemm_args;

typedef struct {
  int isa;
  int kpad; /* K is padded with zero codes to a multiple of this */
  /* Bytes of the packed layout of n x kp codes. */
  size_t (*packed_size)(int n, int kp, int bits);
  /* codes: n rows of kp bytes (zero padded). */
  void (*pack)(const uint8_t *codes, int n, int kp, int bits, uint8_t *dst);
  void (*gemm)(const ek_gemm_args *a);
  /* m rows of k floats (row stride ldx floats) to codes (row stride ldc bytes, zeros from k to kp);
   * rowsum (optional) receives each row's code sum. */
  void (*quantize_rows)(const float *x, size_t ldx, int m, int k, int kp, const ek_qparams *q, uint8_t *codes,
                        size_t ldc, int32_t *rowsum);
  /* Optional (NULL: generic quantize, transpose, pack): the float operand B of a batched matmul (n x k row-major,
   * or k x n when !b_transposed) straight to packed codes, and its per-channel code sums (cb: n entries, room
   * for a multiple of 16). tmp: ek_prepare_b_scratch(n, k) bytes. */
  void (*prepare_b)(const float *b, int n, int k, int kp, int b_transposed, const ek_qparams *q, int bits,
                    uint8_t *tmp, uint8_t *packed, int32_t *cb);
  /* Optional: put a channel of ones at index n of packed weights, if the layout (for codes of `bits`) has a
   * spare padding channel there; returns 1 if it did (the GEMM then derives the row sums itself, see
   * ek_gemm_args.ones_channel). */
  int (*add_ones_channel)(uint8_t *packed, int n, int kp, int bits);
} ek_ops;

/* Scratch bytes prepare_b may use: the k x n codes plus slack for 16-byte loads past the end. */
EK_INLINE size_t ek_prepare_b_scratch(int n, int k) { return (size_t)n * (size_t)k + 64; }

EK_HIDDEN extern const ek_ops ek_ops_scalar;
#ifdef EK_HAVE_AVX2
EK_HIDDEN extern const ek_ops ek_ops_avx2;
#endif
#ifdef EK_HAVE_AVX512VNNI
EK_HIDDEN extern const ek_ops ek_ops_avx512vnni;
#endif
#ifdef EK_HAVE_NEON
EK_HIDDEN extern const ek_ops ek_ops_neon;
#endif
#ifdef EK_HAVE_DOTPROD
EK_HIDDEN extern const ek_ops ek_ops_dotprod;
#endif
#ifdef EK_HAVE_I8MM
EK_HIDDEN extern const ek_ops ek_ops_i8mm;
#endif

/* Scalar building blocks, reused by the vector paths for remainders. */
EK_HIDDEN void ek_scalar_quantize_rows(const float *x, size_t ldx, int m, int k, int kp, const ek_qparams *q,
                                       uint8_t *codes, size_t ldc, int32_t *rowsum);

/* Thread pool: fn(ctx, tid, nt) is called exactly once for each tid in 0..nt-1, tid 0 on the calling thread,
 * the others on pool workers, except that the caller runs any tid whose worker has not started by the time its
 * own call returns (so tasks may run one after the other on one thread). Returns when every call has returned.
 * nt <= 1 runs inline and never creates a thread. Tasks that pull work from a shared atomic counter balance
 * best (a late worker then finds little or nothing left). */
typedef void (*ek_task_fn)(void *ctx, int tid, int nt);
EK_HIDDEN void ek_parallel(int nt, ek_task_fn fn, void *ctx);

/* Round half to even for 0 <= v < 2^22 (adding 1.5 * 2^23 leaves the integer part in the mantissa). */
#define EK_RNE_MAGIC 12582912.0f
/* exp(x) for x <= 0 (softmax after max subtraction, GELU's erf): Cody-Waite reduction to |r| <= ln2/2 and a
 * degree-6 Taylor polynomial, 2^n built in the exponent bits; relative error about 2e-7. Arguments below -80
 * give exp(-80) = 1.8e-35: a result (or a product of it with a probability) near 2^-126 would be subnormal,
 * and subnormal arithmetic costs x86 cores about a hundred cycles per vector op; masked attention entries
 * (logit - 100) hit it in every shifted window. No 4-bit code can tell 1e-35 from 0. */
EK_INLINE float ek_exp_approx(float x) {
  float n, r, p, s;
  int32_t bits;
  x = x > -80.0f ? x : -80.0f;
  n = (x * 1.44269504f + EK_RNE_MAGIC) - EK_RNE_MAGIC;
  r = x - n * 0.693145752f;
  r = r - n * 1.42860677e-6f;
  p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  bits = ((int32_t)n + 127) << 23;
  memcpy(&s, &bits, sizeof s);
  return p * s;
}

/* Called by ek_qlinear_run_ex for each block of output rows [row0, row0 + rows) (row stride: the layer's N) by
 * the thread that computed it, while it is in cache. */
typedef void (*ek_rows_hook)(void *arg, float *y, int row0, int rows);

/* edgesr_qlinear_run with two fusions for the Swin block: the input may come as codes already quantized with
 * this layer's input bounds (x_codes: m rows of ek_qlinear_padded_k bytes, zero padded, and x_rowsum: their
 * sums; x is then unused), and hook (optional) sees each block of output rows; with y NULL the rows go to a
 * per-thread block, so an output only the hook needs never goes to memory. */
EK_HIDDEN void ek_qlinear_run_ex(const edgesr_qlinear *layer, const float *x, const uint8_t *x_codes,
                                 const int32_t *x_rowsum, int m, float *y, ek_rows_hook hook, void *hook_arg,
                                 int threads);
EK_HIDDEN int ek_qlinear_padded_k(const edgesr_qlinear *layer);
/* rows x K floats -> codes with the layer's input quantizer, rows of ek_qlinear_padded_k bytes, and row sums. */
EK_HIDDEN void ek_qlinear_quantize_input(const edgesr_qlinear *layer, const float *x, int rows, uint8_t *codes,
                                         int32_t *rowsum);

/* edgesr_qattention for callers that prepare its constants once: bias and mask already transposed per n x n
 * block (bias_t[h][j][i] = bias[h][i][j]); or, instead of a mask, (mask_windows, n) region labels (the shifted-
 * window mask is -100 where two tokens' labels differ). token_major: q, k, v and out are (groups, n, heads * hd)
 * as the linears produce them, instead of (groups * heads, n, hd). codes: q, k, v already quantized (bytes, same
 * layout; q, k, v may then be NULL), or NULL. Token-major codes without a mask (the Swin block's case) run whole
 * windows per task and may read 15 bytes past the end of each code array. */
EK_HIDDEN int ek_qattention_t(const float *q, const float *k, const float *v, int groups, int heads, int n, int hd,
                              int token_major, const uint8_t *const codes[3], const float *bias_t,
                              const float *mask_t, const float *labels, int mask_windows, const float bounds[8],
                              int bits, float *out, int threads);

/* threads argument of the public API -> 1 .. EK_MAX_THREADS. */
EK_INLINE int ek_clamp_threads(int threads) {
  return threads < 1 ? 1 : threads > EK_MAX_THREADS ? EK_MAX_THREADS : threads;
}

EK_INLINE int ek_round_up(int v, int m) { return (v + m - 1) / m * m; }
EK_INLINE int ek_min(int a, int b) { return a < b ? a : b; }
EK_INLINE int ek_max(int a, int b) { return a > b ? a : b; }

EK_INLINE uint32_t ek_load_u32(const void *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

#endif /* EK_INTERNAL_H */
