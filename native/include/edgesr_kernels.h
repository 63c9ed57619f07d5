/* edgesr native kernels: 2DQuant integer linear and batch matmul.
 *
 * One library shared by every deployment path (ExecuTorch delegate, LiteRT delegate, Android runner).
 * Pure C99 ABI, no Python, no framework headers.
 *
 * Quantizer (per tensor, asymmetric, learned bounds l < u, b bits, L = 2^b - 1):
 *     step = (u - l) / L;  code = nearbyint((clamp(v, l, u) - l) / step)   in [0, L]
 *     dequantized value = code * step + l
 * Computed in float32 with a true division (not a reciprocal multiply) and round-half-to-even, so codes equal
 * those of the PyTorch fake-quant model bit for bit.
 *
 * Linear y[m, n] = sum_k xq[m, k] * wq[n, k] + bias[n] with xq, wq dequantized, evaluated as
 *     s_x s_w * ACC[m, n] + s_x l_w * RX[m] + l_x s_w * CW[n] + K l_x l_w + bias[n]
 * where ACC = sum_k cx[m, k] cw[n, k] (int32, exact), RX[m] = sum_k cx[m, k], CW[n] = sum_k cw[n, k].
 */
#ifndef EDGESR_KERNELS_H
#define EDGESR_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Instruction-set paths. edgesr_isa_available() tells which this CPU and build have; dispatch picks the best
 * unless edgesr_force_isa() pins one (tests use it to exercise every path). */
typedef enum {
  EDGESR_ISA_SCALAR = 0,
  EDGESR_ISA_AVX2 = 1,
  EDGESR_ISA_AVX512_VNNI = 2,
  EDGESR_ISA_NEON = 3,
  EDGESR_ISA_NEON_DOTPROD = 4,
  EDGESR_ISA_NEON_I8MM = 5,
  EDGESR_ISA_COUNT = 6
} edgesr_isa;

int edgesr_isa_available(int isa);
int edgesr_force_isa(int isa); /* -1 restores automatic dispatch; returns 0 on success, -1 if unavailable */
int edgesr_active_isa(void);
const char *edgesr_isa_name(int isa);
const char *edgesr_version(void);

/* Codes of n floats (see the quantizer above), one code per byte. */
void edgesr_quantize_codes(const float *x, size_t n, float lower, float upper, int bits, uint8_t *codes);

/* Unpack a little-endian bit stream of `count` b-bit codes (4 bits: two per byte, first code in the low nibble)
 * into one code per byte. Returns 0, or -1 for bits outside 1..8. */
int edgesr_unpack_codes(const uint8_t *packed, size_t count, int bits, uint8_t *codes);

/* A prepared quantized linear layer: weight codes are unpacked and laid out for the active ISA once. */
typedef struct edgesr_qlinear edgesr_qlinear;

/* weight_packed: N x K codes, row-major, bit-packed as above. bias may be NULL. Returns NULL on bad arguments
 * or allocation failure. */
edgesr_qlinear *edgesr_qlinear_create(int n, int k, int bits, const uint8_t *weight_packed, float w_lower,
                                      float w_upper, float x_lower, float x_upper, const float *bias);
void edgesr_qlinear_destroy(edgesr_qlinear *layer);
/* Output channels n and input channels k of a linear. */
void edgesr_qlinear_shape(const edgesr_qlinear *layer, int *n, int *k);

/* y (M x N) = quantized linear of x (M x K), both row-major float32; threads >= 1. */
void edgesr_qlinear_run(const edgesr_qlinear *layer, const float *x, int m, float *y, int threads);

/* Integer accumulators only (for tests against an integer reference): acc (M x N) = sum_k cx[m,k] cw[n,k]. */
void edgesr_qlinear_accumulate(const edgesr_qlinear *layer, const uint8_t *x_codes, int m, int32_t *acc, int threads);

/* Batched matmul with both operands quantized per tensor:
 *   out[b] (M x N) = A[b] (M x K) @ B[b]   where B[b] is K x N row-major (b_transposed = 0)
 *                                           or N x K row-major, i.e. used as its transpose (b_transposed = 1).
 * All float32, contiguous. Q·K^T uses b_transposed = 1 with K as stored; attn·V uses b_transposed = 0. */
void edgesr_qbmm(const float *a, const float *b, int batch, int m, int k, int n, int b_transposed, float a_lower,
                 float a_upper, float b_lower, float b_upper, int bits, float *out, int threads);

/* Integer accumulators of the batched matmul from codes: a_codes (batch x M x K), b_codes (batch x N x K). */
void edgesr_qbmm_accumulate(const uint8_t *a_codes, const uint8_t *b_codes, int batch, int m, int k, int n,
                            int32_t *acc, int threads);

/* Fused quantized window attention (2DQuant's Q·Kᵀ and attn·V with everything between them):
 *   for each task t = g * heads + h (g: window, h: head), with Q the per-tensor quantizer of each operand,
 *   out[t] = Q_a(softmax(Q_q(q[t]) · Q_k(k[t])ᵀ + bias[h] + mask[g % mask_windows])) · Q_v(v[t])
 * q, k, v, out: (groups * heads, n, hd) float32 contiguous; bias: (heads, n, n); mask: (mask_windows, n, n) or
 * NULL. bounds: q lower/upper, k lower/upper, attention-map lower/upper, v lower/upper. n <= 256, hd <= 64.
 * Returns 0, or -1 for bad arguments (nothing is written). */
int edgesr_qattention(const float *q, const float *k, const float *v, int groups, int heads, int n, int hd,
                      const float *bias, const float *mask, int mask_windows, const float bounds[8], int bits,
                      float *out, int threads);

/* One whole quantized Swin transformer block of SwinIR (2DQuant W{b}A{b}) on a fixed token grid:
 *   y = x + proj(attention(window_partition(shift(LN1(x)))))  mapped back (unshift, window reverse)
 *   out = y + fc2(GELU(fc1(LN2(y))))
 * with q, k, v, proj, fc1, fc2 quantized linears (edgesr_qlinear) and the fused quantized attention
 * (edgesr_qattention; q is scaled before its quantizer). The relative-position bias is gathered from its table
 * and the shifted-window mask derived from the grid once, at creation. GELU is the erf form (absolute error
 * below 1e-6 for |x| < 10). Every intermediate stays in one workspace; nothing is allocated per call. */
typedef struct {
  int dim, heads, window, shift, hidden, height, width, bits;
  float eps1, eps2, q_scale;
  const float *norm1_weight, *norm1_bias, *norm2_weight, *norm2_bias;
  const float *bias_table; /* ((2 window - 1)^2, heads), SwinIR's relative_position_bias_table */
  /* Linears in the order q, k, v, proj, fc1, fc2: weight codes N x K bit-packed as for edgesr_qlinear_create,
   * bias (N floats or NULL), input and weight bounds. */
  const uint8_t *weight_packed[6];
  const float *bias[6];
  float x_bounds[6][2], w_bounds[6][2];
  float attn_bounds[8]; /* q, k, attention map, v (lower, upper) */
} edgesr_swin_block_desc;

typedef struct edgesr_swin_block edgesr_swin_block;

/* Returns NULL for inconsistent dimensions or bounds (height, width multiples of window; 0 <= shift < window;
 * dim a multiple of heads) or on allocation failure. The descriptor's arrays are copied. */
edgesr_swin_block *edgesr_swin_block_create(const edgesr_swin_block_desc *desc);
void edgesr_swin_block_destroy(edgesr_swin_block *block);

/* Floats of workspace one run needs. */
size_t edgesr_swin_block_workspace_floats(const edgesr_swin_block *block);

/* out (height * width x dim) from x (the same shape), row-major tokens; out may equal x. workspace: at least
 * edgesr_swin_block_workspace_floats() floats, or NULL to allocate one for this call. Returns 0, or -1. */
int edgesr_swin_block_run(const edgesr_swin_block *block, const float *x, float *out, float *workspace,
                          int threads);

/* Tokens (height * width) and channels of the block's input and output. */
void edgesr_swin_block_shape(const edgesr_swin_block *block, int *tokens, int *dim);
/* Its attention window (tiles of a tiled image start on multiples of it). */
int edgesr_swin_block_window(const edgesr_swin_block *block);

/* Delegate blobs (layout: edgesr/converter/export/blob.py), shared by every delegate. edgesr_blob_op returns the
 * op code of a well-formed header (1 linear, 2 batch matmul, 3 attention, 4 Swin block), or -1.
 * edgesr_swin_block_from_blob returns NULL unless the bytes are exactly one valid Swin-block blob. */
int edgesr_blob_op(const void *blob, size_t bytes);
edgesr_swin_block *edgesr_swin_block_from_blob(const void *blob, size_t bytes);
edgesr_qlinear *edgesr_qlinear_from_blob(const void *blob, size_t bytes);
/* A batch-matmul blob's bits, b_transposed and bounds (a lower, a upper, b lower, b upper); 0, or -1. */
int edgesr_qbmm_from_blob(const void *blob, size_t bytes, int *bits, int *b_transposed, float bounds[4]);

#ifdef __cplusplus
}
#endif

#endif /* EDGESR_KERNELS_H */
