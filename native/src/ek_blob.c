/* Delegate blobs -> native objects. The byte layout is written by edgesr/converter/export/blob.py (see its
 * docstring); every delegate (ExecuTorch, LiteRT) hands its op's bytes here, so the parsing lives once. */
#include <stdlib.h>
#include <string.h>

#include "edgesr_kernels.h"

enum { BLOB_VERSION = 1, OP_LINEAR = 1, OP_BMM = 2, OP_SWIN_BLOCK = 4 };

typedef struct {
  const uint8_t *p;
  size_t left;
  int ok;
} reader;

static const uint8_t *take(reader *r, size_t n) {
  if (!r->ok || r->left < n) {
    r->ok = 0;
    return NULL;
  }
  const uint8_t *at = r->p;
  r->p += n;
  r->left -= n;
  return at;
}

static uint32_t get_u32(reader *r) {
  uint32_t v = 0;
  const uint8_t *at = take(r, 4);
  if (at) memcpy(&v, at, 4);
  return v;
}

static float get_f32(reader *r) {
  float v = 0.f;
  const uint8_t *at = take(r, 4);
  if (at) memcpy(&v, at, 4);
  return v;
}

/* count floats copied into dst (the blob need not be 4-byte aligned). */
static int get_floats(reader *r, float *dst, size_t count) {
  const uint8_t *at = take(r, 4 * count);
  if (!at) return 0;
  memcpy(dst, at, 4 * count);
  return 1;
}

int edgesr_blob_op(const void *blob, size_t bytes) {
  reader r = {(const uint8_t *)blob, bytes, blob != NULL};
  const uint8_t *magic = take(&r, 4);
  if (!magic || memcmp(magic, "EQ4D", 4) != 0 || get_u32(&r) != BLOB_VERSION) return -1;
  const uint32_t op = get_u32(&r);
  return r.ok ? (int)op : -1;
}

edgesr_swin_block *edgesr_swin_block_from_blob(const void *blob, size_t bytes) {
  if (edgesr_blob_op(blob, bytes) != OP_SWIN_BLOCK) return NULL;
  reader r = {(const uint8_t *)blob + 12, bytes - 12, 1};
  edgesr_swin_block_desc d;
  memset(&d, 0, sizeof d);
  d.bits = (int)get_u32(&r);
  uint32_t dims[7];
  for (int i = 0; i < 7; ++i) dims[i] = get_u32(&r);
  d.dim = (int)dims[0];
  d.heads = (int)dims[1];
  d.window = (int)dims[2];
  d.shift = (int)dims[3];
  d.hidden = (int)dims[4];
  d.height = (int)dims[5];
  d.width = (int)dims[6];
  d.eps1 = get_f32(&r);
  d.eps2 = get_f32(&r);
  d.q_scale = get_f32(&r);
  float bounds[32];
  for (int i = 0; i < 32; ++i) bounds[i] = get_f32(&r);
  /* Sizes below bound every allocation before edgesr_swin_block_create checks consistency. */
  if (!r.ok || dims[0] < 1 || dims[0] > 4096 || dims[1] < 1 || dims[1] > dims[0] || dims[2] < 1 || dims[2] > 64 ||
      dims[4] < 1 || dims[4] > 16384)
    return NULL;
  const size_t c = dims[0], table = (size_t)(2 * d.window - 1) * (2 * d.window - 1) * dims[1];
  float *floats = (float *)malloc(sizeof(float) * (4 * c + table + 5 * c + dims[4]));
  if (!floats) return NULL;
  float *norms = floats, *bias_table = norms + 4 * c, *bias_mem = bias_table + table;
  edgesr_swin_block *block = NULL;
  if (!get_floats(&r, norms, 4 * c) || !get_floats(&r, bias_table, table)) goto done;
  d.norm1_weight = norms;
  d.norm1_bias = norms + c;
  d.norm2_weight = norms + 2 * c;
  d.norm2_bias = norms + 3 * c;
  d.bias_table = bias_table;
  for (int i = 0; i < 6; ++i) {
    const size_t n = i == 4 ? dims[4] : c, k = i == 5 ? dims[4] : c;
    const uint32_t packed = get_u32(&r);
    if (!r.ok || packed != (n * k * (size_t)d.bits + 7) / 8) goto done;
    d.weight_packed[i] = take(&r, packed);
    const uint32_t has_bias = get_u32(&r);
    if (!r.ok || (has_bias && !get_floats(&r, bias_mem, n))) goto done;
    d.bias[i] = has_bias ? bias_mem : NULL;
    bias_mem += has_bias ? n : 0;
    d.x_bounds[i][0] = bounds[4 * i];
    d.x_bounds[i][1] = bounds[4 * i + 1];
    d.w_bounds[i][0] = bounds[4 * i + 2];
    d.w_bounds[i][1] = bounds[4 * i + 3];
  }
  memcpy(d.attn_bounds, bounds + 24, sizeof d.attn_bounds);
  if (r.ok && r.left == 0) block = edgesr_swin_block_create(&d); /* copies what it keeps */
done:
  free(floats);
  return block;
}

edgesr_qlinear *edgesr_qlinear_from_blob(const void *blob, size_t bytes) {
  if (edgesr_blob_op(blob, bytes) != OP_LINEAR) return NULL;
  reader r = {(const uint8_t *)blob + 12, bytes - 12, 1};
  const uint32_t bits = get_u32(&r), n = get_u32(&r), k = get_u32(&r), has_bias = get_u32(&r);
  float b[4];
  for (int i = 0; i < 4; ++i) b[i] = get_f32(&r);
  const uint32_t packed = get_u32(&r);
  if (!r.ok || n < 1 || k < 1 || n > (1u << 20) || k > (1u << 20) || bits < 1 || bits > 8 ||
      packed != ((size_t)n * k * bits + 7) / 8)
    return NULL;
  const uint8_t *codes = take(&r, packed);
  float *bias = NULL;
  if (r.ok && has_bias) {
    bias = (float *)malloc(sizeof(float) * n);
    if (!bias || !get_floats(&r, bias, n)) {
      free(bias);
      return NULL;
    }
  }
  edgesr_qlinear *lin = NULL;
  if (r.ok && r.left == 0) lin = edgesr_qlinear_create((int)n, (int)k, (int)bits, codes, b[2], b[3], b[0], b[1], bias);
  free(bias);
  return lin;
}

int edgesr_qbmm_from_blob(const void *blob, size_t bytes, int *bits, int *b_transposed, float bounds[4]) {
  if (edgesr_blob_op(blob, bytes) != OP_BMM) return -1;
  reader r = {(const uint8_t *)blob + 12, bytes - 12, 1};
  *bits = (int)get_u32(&r);
  *b_transposed = (int)get_u32(&r);
  for (int i = 0; i < 4; ++i) bounds[i] = get_f32(&r);
  return r.ok && r.left == 0 && *bits >= 1 && *bits <= 8 && bounds[1] > bounds[0] && bounds[3] > bounds[2] ? 0 : -1;
}
