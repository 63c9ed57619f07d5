/* edgesr_runner: runs the quantized layers of an edgesr INT4 .tflite standalone on any CPU the kernels build for
 * (an aarch64 phone through `adb shell`, qemu, a desktop), with no LiteRT library: the file's EDGESR_SWIN_BLOCK
 * custom ops carry everything a block needs (their options are the delegate blob, see
 * converter/export/blob.py), so the runner reads them straight from the flatbuffer.
 *
 *   edgesr_runner MODEL.tflite [--input TOKENS.f32] [--output OUT.f32] [--threads N] [--repeats R]
 *                 [--warmup W] [--isa NAME] [--group G]
 *   edgesr_runner MODEL.tflite --full [--input TILE.f32] [--output OUT.f32] [...]
 *   edgesr_runner MODEL.tflite --image IN.ppm --output OUT.ppm [--overlap O] [--no-feather] [--threads N]
 *   edgesr_runner --golden IN.bin OUT.bin [--isa NAME]
 *
 * Model mode runs the chain of blocks of residual group G (default 0; the blocks whose input is the previous
 * block's output) on (tokens x dim) float32 tokens (random with a fixed seed without --input), prints per-run
 * latency statistics as one JSON line, and writes the group's output for parity checks.
 * Whole-graph mode (--full) interprets the entire file in plain C: its INT4 blocks with the kernels, and the few
 * builtin ops edgesr writes around them (CONV_2D, ADD/SUB/MUL/DIV, MEAN, RSQRT, RESHAPE, DEPTH_TO_SPACE), one NHWC
 * LR tile in, the upscaled tile out: the whole model on any CPU, no LiteRT (float sums in a fixed order, so
 * machines agree bit for bit).
 * Image mode (--image) runs a whole 8-bit PPM tile by tile with the shared tile plan (runtime/TILING.md).
 * Golden mode reads integer test vectors (see edgesr/native/runner.py) and writes the quantized linear's int32
 * accumulators: integers in, integers out, so every machine must produce the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "edgesr_kernels.h"

/* ---- minimal, bounds-checked flatbuffer reading (little-endian hosts) ------------------------------------ */

typedef struct {
  const uint8_t *data;
  size_t size;
} fbuf;

static int fb_ok(const fbuf *f, size_t at, size_t n) { return at <= f->size && n <= f->size - at; }

static uint32_t rd_u32(const fbuf *f, size_t at) {
  uint32_t v = 0;
  if (fb_ok(f, at, 4)) memcpy(&v, f->data + at, 4);
  return v;
}

static uint16_t rd_u16(const fbuf *f, size_t at) {
  uint16_t v = 0;
  if (fb_ok(f, at, 2)) memcpy(&v, f->data + at, 2);
  return v;
}

/* Position of field `slot` (vtable byte offset, 4 for the first field) of the table at `table`, or 0. */
static size_t fb_field(const fbuf *f, size_t table, unsigned slot) {
  if (!fb_ok(f, table, 4)) return 0;
  const int32_t soff = (int32_t)rd_u32(f, table);
  const int64_t vt = (int64_t)table - soff;
  if (vt < 0 || !fb_ok(f, (size_t)vt, 4)) return 0;
  const uint16_t vt_size = rd_u16(f, (size_t)vt);
  if (slot + 2 > vt_size) return 0;
  const uint16_t off = rd_u16(f, (size_t)vt + slot);
  return off ? table + off : 0;
}

/* The table / vector a field's uoffset points to, or 0. */
static size_t fb_deref(const fbuf *f, size_t field) {
  if (!field || !fb_ok(f, field, 4)) return 0;
  const size_t target = field + rd_u32(f, field);
  return fb_ok(f, target, 4) ? target : 0;
}

static uint32_t fb_len(const fbuf *f, size_t vec) { return vec ? rd_u32(f, vec) : 0; }

static size_t fb_elem_table(const fbuf *f, size_t vec, uint32_t i) { return fb_deref(f, vec + 4 + 4 * (size_t)i); }

static int32_t fb_i32_field(const fbuf *f, size_t table, unsigned slot, int32_t dflt) {
  const size_t at = fb_field(f, table, slot);
  return at && fb_ok(f, at, 4) ? (int32_t)rd_u32(f, at) : dflt;
}

/* ---- files ----------------------------------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *size) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  char *buf = NULL;
  if (fseek(fp, 0, SEEK_END) == 0) {
    const long n = ftell(fp);
    if (n > 0 && fseek(fp, 0, SEEK_SET) == 0 && (buf = (char *)malloc((size_t)n))) {
      if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
      } else {
        *size = (size_t)n;
      }
    }
  }
  fclose(fp);
  return buf;
}

/* n floats from `path` into dst (exactly n * 4 bytes), or, without a path, values from a fixed-seed generator in
 * [lo, lo + span): the same inputs on every machine. 0, or -1 with a message. */
static int load_input(float *dst, size_t n, const char *path, float lo, float span, const char *what) {
  if (!path) {
    uint32_t s = 12345u;
    for (size_t i = 0; i < n; ++i) {
      s = s * 1664525u + 1013904223u;
      dst[i] = lo + span * (float)((s >> 8) & 0xFFFF) / 65536.0f;
    }
    return 0;
  }
  size_t size = 0;
  char *raw = read_file(path, &size);
  const int ok = raw && size == sizeof(float) * n;
  if (ok) memcpy(dst, raw, size);
  else fprintf(stderr, "edgesr_runner: %s must hold %zu float32 %s\n", path, n, what);
  free(raw);
  return ok ? 0 : -1;
}

static int write_floats(const char *path, const float *data, size_t n) {
  FILE *fp = fopen(path, "wb");
  const int ok = fp && fwrite(data, sizeof(float), n, fp) == n;
  if (fp && fclose(fp) != 0) return -1;
  if (!ok) fprintf(stderr, "edgesr_runner: cannot write %s\n", path);
  return ok ? 0 : -1;
}

/* ---- whole-graph mode: the ops edgesr writes around its INT4 blocks, interpreted in plain C ----------------- */

enum { OP_ADD = 0, OP_CONV_2D = 3, OP_DEPTH_TO_SPACE = 5, OP_MUL = 18, OP_RESHAPE = 22, OP_CUSTOM = 32, OP_MEAN = 40,
       OP_SUB = 41, OP_DIV = 42, OP_RSQRT = 76 };

typedef struct {
  int rank, shape[8], type;
  size_t elems;
  const void *cdata; /* constant data inside the file, or NULL */
  float *data;       /* activations: owned buffer */
} g_tensor;

enum { OP_SKIPPED = -1 }; /* an op block mode does not run (lenient loading) */

typedef struct {
  int code, n_in, n_out, in[4], out;
  int block_size;     /* DEPTH_TO_SPACE */
  float *conv_weight; /* CONV_2D: (k, k, Ci, Co), transposed at load so the inner loop runs over Co */
  edgesr_swin_block *block;
} g_op;

typedef struct {
  int n_tensors, n_ops, input, output;
  g_tensor *t;
  g_op *ops;
  float *workspace;
} g_model;

static void graph_free(g_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_tensors; ++i) free(m->t[i].data);
  for (int i = 0; i < m->n_ops; ++i) {
    if (m->ops[i].block) edgesr_swin_block_destroy(m->ops[i].block);
    free(m->ops[i].conv_weight);
  }
  free(m->t);
  free(m->ops);
  free(m->workspace);
  memset(m, 0, sizeof *m);
}

static int rd_ivec(const fbuf *f, size_t vec, int *out, int max) {
  const uint32_t n = fb_len(f, vec);
  if (!vec || n > (uint32_t)max || !fb_ok(f, vec + 4, 4 * (size_t)n)) return -1;
  for (uint32_t i = 0; i < n; ++i) out[i] = (int)rd_u32(f, vec + 4 + 4 * (size_t)i);
  return (int)n;
}

/* Loads every tensor and operator of subgraph 0; returns 0, or -1 with a message on stderr. strict = 0: ops this
 * runner cannot run are marked OP_SKIPPED instead of failing the load (block mode runs only the blocks). */
static int graph_load(const fbuf *f, g_model *m, int strict) {
  memset(m, 0, sizeof *m);
  if (f->size < 8 || memcmp(f->data + 4, "TFL3", 4) != 0) return -1;
  const size_t model = rd_u32(f, 0);
  const size_t codes = fb_deref(f, fb_field(f, model, 6)), subgraphs = fb_deref(f, fb_field(f, model, 8));
  const size_t buffers = fb_deref(f, fb_field(f, model, 12));
  if (!codes || !fb_len(f, subgraphs)) return -1;
  const size_t sg = fb_elem_table(f, subgraphs, 0);
  const size_t tensors = fb_deref(f, fb_field(f, sg, 4)), ops = fb_deref(f, fb_field(f, sg, 10));
  int io[2];
  if (rd_ivec(f, fb_deref(f, fb_field(f, sg, 6)), io, 1) != 1 || rd_ivec(f, fb_deref(f, fb_field(f, sg, 8)), io + 1, 1) != 1)
    return -1;
  m->input = io[0];
  m->output = io[1];
  m->n_tensors = (int)fb_len(f, tensors);
  m->n_ops = (int)fb_len(f, ops);
  m->t = (g_tensor *)calloc((size_t)m->n_tensors + 1, sizeof(g_tensor));
  m->ops = (g_op *)calloc((size_t)m->n_ops + 1, sizeof(g_op));
  if (!m->t || !m->ops || m->input < 0 || m->input >= m->n_tensors || m->output < 0 || m->output >= m->n_tensors)
    return -1;
  for (int i = 0; i < m->n_tensors; ++i) {
    g_tensor *t = &m->t[i];
    const size_t tt = fb_elem_table(f, tensors, (uint32_t)i);
    t->rank = rd_ivec(f, fb_deref(f, fb_field(f, tt, 4)), t->shape, 8);
    if (t->rank < 0) t->rank = 0; /* scalar */
    const size_t type_at = fb_field(f, tt, 6);
    t->type = type_at && fb_ok(f, type_at, 1) ? f->data[type_at] : 0;
    t->elems = 1;
    for (int d = 0; d < t->rank; ++d) t->elems *= (size_t)(t->shape[d] > 0 ? t->shape[d] : 0);
    const uint32_t buf = (uint32_t)fb_i32_field(f, tt, 8, 0);
    if (buf && buf < fb_len(f, buffers)) {
      const size_t data = fb_deref(f, fb_field(f, fb_elem_table(f, buffers, buf), 4));
      const size_t bytes = fb_len(f, data);
      if (bytes) {
        if (!fb_ok(f, data + 4, bytes) || bytes != 4 * t->elems) return -1;
        t->cdata = f->data + data + 4;
      }
    }
  }
  size_t workspace = 0;
  for (int i = 0; i < m->n_ops; ++i) {
    g_op *op = &m->ops[i];
    const size_t o = fb_elem_table(f, ops, (uint32_t)i);
    const int32_t opcode = fb_i32_field(f, o, 4, 0);
    if (opcode < 0 || (uint32_t)opcode >= fb_len(f, codes)) return -1;
    const size_t oc = fb_elem_table(f, codes, (uint32_t)opcode);
    const size_t dep = fb_field(f, oc, 4);
    const int deprecated = dep && fb_ok(f, dep, 1) ? (int8_t)f->data[dep] : 0;
    const int builtin = fb_i32_field(f, oc, 10, 0);
    op->code = builtin > deprecated ? builtin : deprecated;
    int outs[4];
    op->n_in = rd_ivec(f, fb_deref(f, fb_field(f, o, 6)), op->in, 4);
    op->n_out = rd_ivec(f, fb_deref(f, fb_field(f, o, 8)), outs, 4);
    if (op->n_in < 1 || op->n_out != 1) return -1;
    op->out = outs[0];
    for (int j = 0; j < op->n_in; ++j)
      if (op->in[j] >= m->n_tensors || (op->in[j] < 0 && j < 2)) return -1;
    if (op->out < 0 || op->out >= m->n_tensors) return -1;
    const size_t opts = fb_deref(f, fb_field(f, o, 12));
    switch (op->code) {
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_RESHAPE: case OP_MEAN: case OP_RSQRT:
      break;
    case OP_CONV_2D: {
      const size_t pad = fb_field(f, opts, 4);
      const int same = !(pad && fb_ok(f, pad, 1) && f->data[pad] != 0);
      const int sw = fb_i32_field(f, opts, 6, 1), sh = fb_i32_field(f, opts, 8, 1);
      const size_t act = fb_field(f, opts, 10);
      const g_tensor *w = &m->t[op->in[1]];
      if (!same || sw != 1 || sh != 1 || (act && fb_ok(f, act, 1) && f->data[act] != 0) || !w->cdata ||
          w->rank != 4) {
        fprintf(stderr, "edgesr_runner: op %d: only stride-1 SAME convs with constant weights are supported\n", i);
        return -1;
      }
      const int co = w->shape[0];
      const size_t per_out = w->elems / (size_t)co;
      const float *src = (const float *)w->cdata;
      if (!(op->conv_weight = (float *)malloc(sizeof(float) * w->elems))) return -1;
      for (int o = 0; o < co; ++o)
        for (size_t t = 0; t < per_out; ++t) op->conv_weight[t * co + o] = src[(size_t)o * per_out + t];
      break;
    }
    case OP_DEPTH_TO_SPACE:
      op->block_size = fb_i32_field(f, opts, 4, 0);
      if (op->block_size < 1) return -1;
      break;
    case OP_CUSTOM: {
      const size_t name = fb_deref(f, fb_field(f, oc, 6));
      const size_t options = fb_deref(f, fb_field(f, o, 14));
      const char want[] = "EDGESR_SWIN_BLOCK";
      if (!name || fb_len(f, name) != sizeof want - 1 || memcmp(f->data + name + 4, want, sizeof want - 1) != 0) {
        if (!strict) {
          op->code = OP_SKIPPED;
          break;
        }
        fprintf(stderr, "edgesr_runner: op %d: only the EDGESR_SWIN_BLOCK custom op is supported\n", i);
        return -1;
      }
      if (!options || !fb_ok(f, options + 4, fb_len(f, options))) return -1;
      op->block = edgesr_swin_block_from_blob(f->data + options + 4, fb_len(f, options));
      if (!op->block) return -1;
      const size_t w = edgesr_swin_block_workspace_floats(op->block);
      workspace = w > workspace ? w : workspace;
      break;
    }
    default:
      if (!strict) {
        op->code = OP_SKIPPED;
        break;
      }
      fprintf(stderr, "edgesr_runner: op %d: builtin %d is not supported in whole-graph mode (it runs edgesr INT4 "
              "files whose Swin blocks are all EDGESR_SWIN_BLOCK ops)\n", i, op->code);
      return -1;
    }
  }
  for (int i = 0; i < m->n_tensors; ++i) {
    g_tensor *t = &m->t[i];
    if (!t->cdata && t->type == 0 && !(t->data = (float *)calloc(t->elems ? t->elems : 1, sizeof(float)))) return -1;
  }
  if (workspace && !(m->workspace = (float *)malloc(sizeof(float) * workspace))) return -1;
  return 0;
}

static const float *g_in(const g_model *m, int idx) {
  const g_tensor *t = &m->t[idx];
  return t->cdata ? (const float *)t->cdata : t->data;
}

/* numpy broadcasting of two operands to the output shape (rank <= 4, right-aligned). */
static int g_binary(const g_model *m, const g_op *op) {
  const g_tensor *a = &m->t[op->in[0]], *b = &m->t[op->in[1]], *y = &m->t[op->out];
  if (y->rank > 4 || a->rank > 4 || b->rank > 4) return -1;
  int ys[4] = {1, 1, 1, 1}, as[4] = {0}, bs[4] = {0};
  for (int d = 0; d < y->rank; ++d) ys[4 - y->rank + d] = y->shape[d];
  const g_tensor *src[2] = {a, b};
  int *strides[2] = {as, bs};
  for (int s = 0; s < 2; ++s) {
    int dims[4] = {1, 1, 1, 1}, stride = 1;
    for (int d = 0; d < src[s]->rank; ++d) dims[4 - src[s]->rank + d] = src[s]->shape[d];
    for (int d = 3; d >= 0; --d) {
      if (dims[d] != 1 && dims[d] != ys[d]) return -1;
      strides[s][d] = dims[d] == 1 ? 0 : stride;
      stride *= dims[d];
    }
  }
  const float *pa = g_in(m, op->in[0]), *pb = g_in(m, op->in[1]);
  float *py = y->data;
  size_t k = 0;
  for (int i0 = 0; i0 < ys[0]; ++i0)
    for (int i1 = 0; i1 < ys[1]; ++i1)
      for (int i2 = 0; i2 < ys[2]; ++i2)
        for (int i3 = 0; i3 < ys[3]; ++i3, ++k) {
          const float x = pa[i0 * as[0] + i1 * as[1] + i2 * as[2] + i3 * as[3]];
          const float v = pb[i0 * bs[0] + i1 * bs[1] + i2 * bs[2] + i3 * bs[3]];
          py[k] = op->code == OP_ADD ? x + v : op->code == OP_SUB ? x - v : op->code == OP_MUL ? x * v : x / v;
        }
  return 0;
}

/* NHWC 'same' convolution, stride 1: (1, H, W, Ci) * (k, k, Ci, Co) + bias -> (1, H, W, Co). The innermost loop
 * runs over output channels (it vectorises) and every output still sums its k*k*Ci products in one fixed order,
 * the same on every CPU. */
static int g_conv(const g_model *m, const g_op *op) {
  const g_tensor *x = &m->t[op->in[0]], *w = &m->t[op->in[1]], *y = &m->t[op->out];
  if (x->rank != 4 || y->rank != 4 || w->shape[1] != w->shape[2] || w->shape[3] != x->shape[3]) return -1;
  const int h = x->shape[1], wd = x->shape[2], ci = x->shape[3], co = w->shape[0], k = w->shape[1], pad = (k - 1) / 2;
  const float *px = g_in(m, op->in[0]), *wt = op->conv_weight;
  const float *pb = op->n_in > 2 && op->in[2] >= 0 ? g_in(m, op->in[2]) : NULL;
  float *py = y->data;
  for (int r = 0; r < h; ++r)
    for (int c = 0; c < wd; ++c) {
      float *out = py + ((size_t)r * wd + c) * co;
      for (int o = 0; o < co; ++o) out[o] = pb ? pb[o] : 0.0f;
      for (int ky = 0; ky < k; ++ky) {
        const int iy = r + ky - pad;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < k; ++kx) {
          const int ix = c + kx - pad;
          if (ix < 0 || ix >= wd) continue;
          const float *in = px + ((size_t)iy * wd + ix) * ci;
          const float *wk = wt + ((size_t)ky * k + kx) * ci * co;
          for (int i = 0; i < ci; ++i) {
            const float v = in[i];
            const float *wrow = wk + (size_t)i * co;
            for (int o = 0; o < co; ++o) out[o] += v * wrow[o];
          }
        }
      }
    }
  return 0;
}

static int graph_run(g_model *m, int threads) {
  for (int i = 0; i < m->n_ops; ++i) {
    const g_op *op = &m->ops[i];
    g_tensor *y = &m->t[op->out];
    const g_tensor *x = &m->t[op->in[0]];
    const float *px = g_in(m, op->in[0]);
    int rc = 0;
    switch (op->code) {
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV:
      rc = op->n_in == 2 ? g_binary(m, op) : -1;
      break;
    case OP_CONV_2D:
      rc = g_conv(m, op);
      break;
    case OP_RESHAPE:
      if (x->elems != y->elems) return -1;
      memcpy(y->data, px, sizeof(float) * y->elems);
      break;
    case OP_RSQRT:
      for (size_t j = 0; j < y->elems; ++j) y->data[j] = 1.0f / sqrtf(px[j]);
      break;
    case OP_MEAN: { /* over the last axis, keepdims (what edgesr writes) */
      const int n = x->rank ? x->shape[x->rank - 1] : 1;
      const int32_t *axis = (const int32_t *)m->t[op->in[1]].cdata;
      if (!axis || (axis[0] != x->rank - 1 && axis[0] != -1) || y->elems * (size_t)n != x->elems) return -1;
      for (size_t r = 0; r < y->elems; ++r) {
        float s = 0.0f;
        for (int j = 0; j < n; ++j) s += px[r * n + j];
        y->data[r] = s / (float)n;
      }
      break;
    }
    case OP_DEPTH_TO_SPACE: {
      const int b = op->block_size, h = x->shape[1], w = x->shape[2], c = y->shape[3];
      for (int r = 0; r < h; ++r)
        for (int q = 0; q < w; ++q)
          for (int i = 0; i < b; ++i)
            for (int j = 0; j < b; ++j)
              memcpy(y->data + (((size_t)(r * b + i) * (w * b)) + q * b + j) * c,
                     px + ((size_t)r * w + q) * (size_t)(b * b * c) + (size_t)(i * b + j) * c, sizeof(float) * c);
      break;
    }
    case OP_CUSTOM:
      rc = edgesr_swin_block_run(op->block, px, y->data, m->workspace, threads);
      break;
    default:
      rc = -1;
    }
    if (rc != 0) {
      fprintf(stderr, "edgesr_runner: op %d (builtin %d) failed on its tensor shapes\n", i, op->code);
      return -1;
    }
  }
  return 0;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int set_isa(const char *name) {
  for (int isa = 0; isa < 8; ++isa) {
    const char *n = edgesr_isa_name(isa);
    if (n && !strcmp(n, name)) return edgesr_force_isa(isa) == 0 ? 0 : -1;
  }
  return -1;
}

/* Runs fn(ctx) warmup + repeats times; times[] gets the repeats' milliseconds, sorted. 0, or -1 if a run fails. */
static int time_runs(int (*fn)(void *), void *ctx, int warmup, int repeats, double *times) {
  for (int r = -warmup; r < repeats; ++r) {
    const double t0 = now_ms();
    if (fn(ctx) != 0) return -1;
    if (r >= 0) times[r] = now_ms() - t0;
  }
  qsort(times, (size_t)repeats, sizeof(double), cmp_double);
  return 0;
}

typedef struct {
  g_model *m;
  int threads;
  int first, last; /* block mode: ops of the chain */
  float *x, *y;    /* block mode: input tokens, output */
} run_ctx;

static int run_graph_once(void *p) {
  run_ctx *c = (run_ctx *)p;
  return graph_run(c->m, c->threads);
}

static int run_chain_once(void *p) {
  run_ctx *c = (run_ctx *)p;
  const float *src = c->x;
  for (int i = c->first; i <= c->last; ++i) {
    if (!c->m->ops[i].block) continue;
    if (edgesr_swin_block_run(c->m->ops[i].block, src, c->y, c->m->workspace, c->threads) != 0) return -1;
    src = c->y;
  }
  return 0;
}

/* Whole-graph mode: one LR tile (1, H, W, C) float32 NHWC in, the model's output tile out. */
static int run_full(const fbuf *f, const char *path, const char *input, const char *output, int threads, int repeats,
                    int warmup) {
  g_model m;
  memset(&m, 0, sizeof m);
  double *times = (double *)malloc(sizeof(double) * (size_t)repeats);
  int rc = 1;
  if (!times || graph_load(f, &m, 1) != 0) {
    fprintf(stderr, "edgesr_runner: %s cannot run in whole-graph mode (not an edgesr INT4 .tflite, or damaged)\n", path);
    goto done;
  }
  g_tensor *in = &m.t[m.input], *out = &m.t[m.output];
  run_ctx ctx = {&m, threads, 0, 0, NULL, NULL};
  if (!in->data || !out->data || load_input(in->data, in->elems, input, 0.0f, 1.0f, "values (one NHWC input tile)") != 0 ||
      time_runs(run_graph_once, &ctx, warmup, repeats, times) != 0)
    goto done;
  printf("{\"model\": \"%s\", \"mode\": \"full\", \"isa\": \"%s\", \"threads\": %d, \"input\": [%d, %d, %d], "
         "\"output\": [%d, %d, %d], \"repeats\": %d, \"ms_min\": %.3f, \"ms_median\": %.3f, \"ms_max\": %.3f}\n",
         path, edgesr_isa_name(edgesr_active_isa()), threads, in->shape[1], in->shape[2], in->shape[3], out->shape[1],
         out->shape[2], out->shape[3], repeats, times[0], times[repeats / 2], times[repeats - 1]);
  rc = output && write_floats(output, out->data, out->elems) != 0;
done:
  graph_free(&m);
  free(times);
  return rc;
}

/* Block mode: residual group G's chain of EDGESR_SWIN_BLOCK ops (each block's input is the previous block's
 * output) on (tokens x dim) float32 tokens; other ops of the file are not run. */
static int run_blocks(const fbuf *f, const char *path, const char *input, const char *output, int group, int threads,
                      int repeats, int warmup) {
  g_model m;
  memset(&m, 0, sizeof m);
  double *times = (double *)malloc(sizeof(double) * (size_t)repeats);
  run_ctx ctx = {&m, threads, -1, -1, NULL, NULL};
  int rc = 1, chain = -1, count = 0, prev = -1;
  if (!times || graph_load(f, &m, 0) != 0) {
    fprintf(stderr, "edgesr_runner: %s is not an edgesr INT4 .tflite (or its EDGESR_SWIN_BLOCK ops are damaged)\n",
            path);
    goto done;
  }
  for (int i = 0; i < m.n_ops; ++i) {
    if (!m.ops[i].block) continue;
    if (prev < 0 || m.ops[i].in[0] != m.ops[prev].out) ++chain;
    if (chain == group) {
      if (ctx.first < 0) ctx.first = i;
      ctx.last = i;
      ++count;
    }
    prev = i;
  }
  if (ctx.first < 0) {
    fprintf(stderr, "edgesr_runner: %s has no group %d of EDGESR_SWIN_BLOCK ops\n", path, group);
    goto done;
  }
  int tokens = 0, dim = 0;
  edgesr_swin_block_shape(m.ops[ctx.first].block, &tokens, &dim);
  const size_t elems = (size_t)tokens * (size_t)dim;
  ctx.x = (float *)malloc(sizeof(float) * elems);
  ctx.y = (float *)malloc(sizeof(float) * elems);
  if (!ctx.x || !ctx.y || load_input(ctx.x, elems, input, -1.0f, 2.0f, "tokens (the group's input)") != 0 ||
      time_runs(run_chain_once, &ctx, warmup, repeats, times) != 0)
    goto done;
  double mean = 0;
  for (int r = 0; r < repeats; ++r) mean += times[r] / repeats;
  printf("{\"model\": \"%s\", \"isa\": \"%s\", \"threads\": %d, \"group\": %d, \"blocks\": %d, \"tokens\": %d, "
         "\"dim\": %d, \"repeats\": %d, \"ms_min\": %.3f, \"ms_median\": %.3f, \"ms_mean\": %.3f, \"ms_max\": %.3f}\n",
         path, edgesr_isa_name(edgesr_active_isa()), threads, group, count, tokens, dim, repeats, times[0],
         times[repeats / 2], mean, times[repeats - 1]);
  rc = output && write_floats(output, ctx.y, elems) != 0;
done:
  graph_free(&m);
  free(ctx.x);
  free(ctx.y);
  free(times);
  return rc;
}

/* ---- image mode: the tile plan of runtime/TILING.md (spec v1) around whole-graph runs ----------------------- */

/* Source index of position i of an axis of `length` pixels mirror-padded to `padded` (numpy "symmetric", edge
 * pixel repeated, repeated while still short). */
static int mirror_source(int i, int length, int padded) {
  int lengths[64], n = 0;
  lengths[n++] = length;
  while (lengths[n - 1] < padded && n < 64) {
    const int cur = lengths[n - 1], add = padded - cur < cur ? padded - cur : cur;
    lengths[n++] = cur + add;
  }
  for (int k = n - 1; k >= 1; --k)
    if (i >= lengths[k - 1]) i = lengths[k - 1] - 1 - (i - lengths[k - 1]);
  return i;
}

typedef struct {
  int count, pad, length, tile;
  int starts[4096];
  double *w; /* count x (length * scale) */
} axis_plan;

static int plan_axis(axis_plan *a, int length, int tile, int overlap, int scale, int feather) {
  a->length = length;
  a->tile = tile;
  a->count = 0;
  a->pad = 0;
  if (length <= tile) {
    a->starts[a->count++] = 0;
    a->pad = tile - length;
  } else {
    for (int s = 0; s < length - tile; s += tile - overlap) {
      if (a->count >= 4095) return -1;
      a->starts[a->count++] = s;
    }
    if (a->starts[a->count - 1] != length - tile) a->starts[a->count++] = length - tile;
  }
  const int out = length * scale, t = tile * scale;
  a->w = (double *)calloc((size_t)a->count * out, sizeof(double));
  if (!a->w) return -1;
  for (int i = 0; i < a->count; ++i)
    for (int x = a->starts[i] * scale; x < a->starts[i] * scale + t && x < out; ++x) a->w[(size_t)i * out + x] = 1.0;
  for (int i = 0; i + 1 < a->count; ++i) {
    const int lo = a->starts[i + 1] * scale, hi = a->starts[i] * scale + t, span = hi - lo;
    for (int p = 0; p < span; ++p) {
      double down, up;
      if (feather) {
        down = (span - p - 0.5) / span;
        up = (p + 0.5) / span;
      } else {
        up = p >= span / 2 ? 1.0 : 0.0;
        down = 1.0 - up;
      }
      double *wi = &a->w[(size_t)i * out + lo + p];
      *wi = i > 0 && feather ? (*wi < down ? *wi : down) : down;
      a->w[(size_t)(i + 1) * out + lo + p] = up;
    }
  }
  for (int x = 0; x < out; ++x) {
    double sum = 0.0;
    for (int i = 0; i < a->count; ++i) sum += a->w[(size_t)i * out + x];
    for (int i = 0; i < a->count; ++i) a->w[(size_t)i * out + x] /= sum;
  }
  return 0;
}

static unsigned char *read_ppm(const char *path, int *w, int *h) {
  size_t n = 0;
  char *raw = read_file(path, &n);
  if (!raw) return NULL;
  int vals[3], got = 0;
  size_t i = 2;
  if (n < 3 || raw[0] != 'P' || raw[1] != '6') goto bad;
  while (got < 3 && i < n) {
    if (raw[i] == '#') {
      while (i < n && raw[i] != '\n') ++i;
    } else if (raw[i] >= '0' && raw[i] <= '9') {
      long v = 0;
      while (i < n && raw[i] >= '0' && raw[i] <= '9' && v < 1000000) v = v * 10 + (raw[i++] - '0');
      vals[got++] = (int)v;
      continue;
    }
    ++i;
  }
  ++i; /* the single whitespace after maxval */
  if (got != 3 || vals[2] != 255 || vals[0] < 1 || vals[1] < 1 || i > n || n - i != (size_t)vals[0] * vals[1] * 3) goto bad;
  unsigned char *px = (unsigned char *)malloc(n - i);
  if (px) memcpy(px, raw + i, n - i);
  *w = vals[0];
  *h = vals[1];
  free(raw);
  return px;
bad:
  free(raw);
  return NULL;
}

/* Upscales a P6 PPM (8-bit RGB) tile by tile: mirror padding to the window multiple, the spec's starts and
 * feathered weights, float32 accumulation, clip and floor(v * 255 + 0.5). */
static int run_image(const fbuf *f, const char *path, const char *image, const char *out_path, int overlap,
                     int feather, int threads) {
  g_model m;
  memset(&m, 0, sizeof m);
  axis_plan *rows = (axis_plan *)calloc(1, sizeof(axis_plan)), *cols = (axis_plan *)calloc(1, sizeof(axis_plan));
  unsigned char *px = NULL, *dst = NULL;
  float *acc = NULL;
  int rc = 1, w0 = 0, h0 = 0;
  if (!rows || !cols || graph_load(f, &m, 1) != 0) {
    fprintf(stderr, "edgesr_runner: %s cannot run in whole-graph mode (not an edgesr INT4 .tflite, or damaged)\n", path);
    goto done;
  }
  if (!(px = read_ppm(image, &w0, &h0))) {
    fprintf(stderr, "edgesr_runner: %s is not a binary 8-bit PPM (P6, maxval 255)\n", image);
    goto done;
  }
  g_tensor *in = &m.t[m.input], *out = &m.t[m.output];
  const int th = in->shape[1], tw = in->shape[2], c = in->shape[3], scale = out->shape[1] / th;
  int multiple = 1; /* the window: tiles start on the whole image's window grid */
  {
    for (int i = 0; i < m.n_ops; ++i)
      if (m.ops[i].block) {
        multiple = edgesr_swin_block_window(m.ops[i].block);
        break;
      }
  }
  if (c != 3 || scale < 1 || overlap < 0 || overlap >= th || overlap >= tw) {
    fprintf(stderr, "edgesr_runner: overlap must be in [0, tile) and the model RGB (tile %dx%d)\n", th, tw);
    goto done;
  }
  const int h1 = h0 + (multiple - h0 % multiple) % multiple, w1 = w0 + (multiple - w0 % multiple) % multiple;
  if (plan_axis(rows, h1, th, overlap, scale, feather) || plan_axis(cols, w1, tw, overlap, scale, feather)) goto done;
  const int h2 = h1 + rows->pad, w2 = w1 + cols->pad, oh = h1 * scale, ow = w1 * scale;
  acc = (float *)calloc((size_t)oh * ow * 3, sizeof(float));
  if (!acc) goto done;
  const double t0 = now_ms();
  for (int i = 0; i < rows->count; ++i)
    for (int j = 0; j < cols->count; ++j) {
      const int r0 = rows->starts[i], c0 = cols->starts[j];
      for (int y = 0; y < th; ++y) {
        const int sy = mirror_source(mirror_source(r0 + y, h1, h2), h0, h1);
        for (int x = 0; x < tw; ++x) {
          const int sx = mirror_source(mirror_source(c0 + x, w1, w2), w0, w1);
          for (int k = 0; k < 3; ++k)
            in->data[((size_t)y * tw + x) * 3 + k] = (float)px[((size_t)sy * w0 + sx) * 3 + k] / 255.0f;
        }
      }
      if (graph_run(&m, threads) != 0) goto done;
      const int oy = r0 * scale, ox = c0 * scale;
      const int hh = th * scale < oh - oy ? th * scale : oh - oy, ww = tw * scale < ow - ox ? tw * scale : ow - ox;
      for (int y = 0; y < hh; ++y)
        for (int x = 0; x < ww; ++x) {
          const float wgt = (float)(rows->w[(size_t)i * oh + oy + y] * cols->w[(size_t)j * ow + ox + x]);
          for (int k = 0; k < 3; ++k)
            acc[((size_t)(oy + y) * ow + ox + x) * 3 + k] += out->data[((size_t)y * tw * scale + x) * 3 + k] * wgt;
        }
    }
  const double ms = now_ms() - t0;
  const int fh = h0 * scale, fw = w0 * scale;
  dst = (unsigned char *)malloc((size_t)fh * fw * 3);
  if (!dst) goto done;
  for (int y = 0; y < fh; ++y)
    for (int x = 0; x < fw * 3; ++x) {
      float v = acc[(size_t)y * ow * 3 + x];
      v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
      dst[(size_t)y * fw * 3 + x] = (unsigned char)floorf(v * 255.0f + 0.5f);
    }
  FILE *fp = fopen(out_path, "wb");
  if (!fp || fprintf(fp, "P6\n%d %d\n255\n", fw, fh) < 0 || fwrite(dst, 1, (size_t)fh * fw * 3, fp) != (size_t)fh * fw * 3) {
    fprintf(stderr, "edgesr_runner: cannot write %s\n", out_path);
    if (fp) fclose(fp);
    goto done;
  }
  fclose(fp);
  printf("{\"model\": \"%s\", \"mode\": \"image\", \"isa\": \"%s\", \"threads\": %d, \"input\": [%d, %d], "
         "\"output\": [%d, %d], \"tiles\": %d, \"overlap\": %d, \"ms_total\": %.3f, \"ms_per_tile\": %.3f}\n",
         path, edgesr_isa_name(edgesr_active_isa()), threads, w0, h0, fw, fh, rows->count * cols->count, overlap, ms,
         ms / (rows->count * cols->count));
  rc = 0;
done:
  graph_free(&m);
  if (rows) free(rows->w);
  if (cols) free(cols->w);
  free(rows);
  free(cols);
  free(px);
  free(dst);
  free(acc);
  return rc;
}

static int usage(void) {
  fprintf(stderr,
          "usage: edgesr_runner MODEL.tflite [--input TOKENS.f32] [--output OUT.f32] [--threads N] [--repeats R]\n"
          "                     [--warmup W] [--isa NAME] [--group G]\n"
          "       edgesr_runner MODEL.tflite --full [--input TILE.f32] [--output OUT.f32] [options as above]\n"
          "       edgesr_runner MODEL.tflite --image IN.ppm --output OUT.ppm [--overlap O] [--no-feather] [--threads N]\n"
          "       edgesr_runner --golden IN.bin OUT.bin [--isa NAME]\n");
  return 2;
}

/* Golden vectors: header u32 x 5 (n, k, m, bits, threads), f32 x 4 (w_lo, w_hi, x_lo, x_hi), packed weight
 * codes ((n k bits + 7) / 8 bytes), input codes (m x k bytes). Output: the m x n int32 accumulators. */
static int run_golden(const char *in_path, const char *out_path) {
  size_t size = 0;
  char *raw = read_file(in_path, &size);
  if (!raw || size < 36) {
    fprintf(stderr, "edgesr_runner: cannot read golden vectors %s\n", in_path);
    free(raw);
    return 1;
  }
  uint32_t h[5];
  float b[4];
  memcpy(h, raw, sizeof h);
  memcpy(b, raw + 20, sizeof b);
  const size_t n = h[0], k = h[1], m = h[2], bits = h[3], packed = (n * k * bits + 7) / 8;
  if (!n || !k || !m || bits < 1 || bits > 8 || size != 36 + packed + m * k) {
    fprintf(stderr, "edgesr_runner: malformed golden vectors %s\n", in_path);
    free(raw);
    return 1;
  }
  edgesr_qlinear *lin = edgesr_qlinear_create((int)n, (int)k, (int)bits, (const uint8_t *)raw + 36, b[0], b[1], b[2],
                                              b[3], NULL);
  int32_t *acc = (int32_t *)malloc(sizeof(int32_t) * m * n);
  int rc = 1;
  if (lin && acc) {
    edgesr_qlinear_accumulate(lin, (const uint8_t *)raw + 36 + packed, (int)m, acc, h[4] ? (int)h[4] : 1);
    FILE *fp = fopen(out_path, "wb");
    if (fp && fwrite(acc, sizeof(int32_t), m * n, fp) == m * n) rc = 0;
    if (fp) fclose(fp);
  }
  if (rc) fprintf(stderr, "edgesr_runner: golden run failed\n");
  edgesr_qlinear_destroy(lin);
  free(acc);
  free(raw);
  return rc;
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *input = NULL, *output = NULL, *isa = NULL, *golden[2] = {NULL, NULL};
  int threads = 1, repeats = 10, warmup = 2, group = 0, full = 0, overlap = 16, feather = 1;
  const char *image = NULL;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const int has = i + 1 < argc;
    if (!strcmp(a, "--input") && has) input = argv[++i];
    else if (!strcmp(a, "--output") && has) output = argv[++i];
    else if (!strcmp(a, "--threads") && has) threads = atoi(argv[++i]);
    else if (!strcmp(a, "--repeats") && has) repeats = atoi(argv[++i]);
    else if (!strcmp(a, "--warmup") && has) warmup = atoi(argv[++i]);
    else if (!strcmp(a, "--group") && has) group = atoi(argv[++i]);
    else if (!strcmp(a, "--isa") && has) isa = argv[++i];
    else if (!strcmp(a, "--full")) full = 1;
    else if (!strcmp(a, "--image") && has) image = argv[++i];
    else if (!strcmp(a, "--overlap") && has) overlap = atoi(argv[++i]);
    else if (!strcmp(a, "--no-feather")) feather = 0;
    else if (!strcmp(a, "--golden") && i + 2 < argc) {
      golden[0] = argv[++i];
      golden[1] = argv[++i];
    } else if (a[0] != '-' && !model_path) model_path = a;
    else return usage();
  }
  if (isa && set_isa(isa) != 0) {
    fprintf(stderr, "edgesr_runner: ISA '%s' is not available on this CPU/build\n", isa);
    return 2;
  }
  if (golden[0]) return run_golden(golden[0], golden[1]);
  if (!model_path || threads < 1 || repeats < 1 || warmup < 0 || group < 0) return usage();

  size_t size = 0;
  char *raw = read_file(model_path, &size);
  if (!raw) {
    fprintf(stderr, "edgesr_runner: cannot read %s\n", model_path);
    return 1;
  }
  const fbuf f = {(const uint8_t *)raw, size};
  if (image) {
    const int rc = output ? run_image(&f, model_path, image, output, overlap, feather, threads) : usage();
    free(raw);
    return rc;
  }
  if (full) {
    const int rc = run_full(&f, model_path, input, output, threads, repeats, warmup);
    free(raw);
    return rc;
  }
  const int rc = run_blocks(&f, model_path, input, output, group, threads, repeats, warmup);
  free(raw);
  return rc;
}
