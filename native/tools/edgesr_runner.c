/* edgesr_runner: runs the quantized layers of an edgesr INT4 .tflite standalone on any CPU the kernels build for
 * (an aarch64 phone through `adb shell`, qemu, a desktop), with no LiteRT library: the file's EDGESR_SWIN_BLOCK
 * custom ops carry everything a block needs (their options are the delegate blob, see
 * converter/export/blob.py), so the runner reads them straight from the flatbuffer.
 *
 *   edgesr_runner MODEL.tflite [--input TOKENS.f32] [--output OUT.f32] [--threads N] [--repeats R]
 *                 [--warmup W] [--isa NAME] [--group G]
 *   edgesr_runner --golden IN.bin OUT.bin [--isa NAME]
 *
 * Model mode runs the chain of blocks of residual group G (default 0; the blocks whose input is the previous
 * block's output) on (tokens x dim) float32 tokens (random with a fixed seed without --input), prints per-run
 * latency statistics as one JSON line, and writes the group's output for parity checks.
 * Golden mode reads integer test vectors (see edgesr/native/runner.py) and writes the quantized linear's int32
 * accumulators: integers in, integers out, so every machine must produce the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- the model's Swin blocks ---------------------------------------------------------------------------- */

typedef struct {
  edgesr_swin_block *block;
  int input, output; /* tensor indices */
} runner_block;

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

/* All EDGESR_SWIN_BLOCK operators of subgraph 0, in execution order; returns the count, or -1. */
static int load_blocks(const fbuf *f, runner_block **out) {
  if (f->size < 8 || memcmp(f->data + 4, "TFL3", 4) != 0) return -1;
  const size_t model = rd_u32(f, 0); /* the root table's uoffset sits at position 0 */
  const size_t codes = fb_deref(f, fb_field(f, model, 6)), subgraphs = fb_deref(f, fb_field(f, model, 8));
  if (!model || !codes || !fb_len(f, subgraphs)) return -1;
  const size_t sg = fb_elem_table(f, subgraphs, 0);
  const size_t ops = fb_deref(f, fb_field(f, sg, 10));
  const uint32_t n_ops = fb_len(f, ops), n_codes = fb_len(f, codes);
  runner_block *blocks = (runner_block *)calloc(n_ops ? n_ops : 1, sizeof(runner_block));
  if (!blocks) return -1;
  int count = 0;
  for (uint32_t i = 0; i < n_ops; ++i) {
    const size_t op = fb_elem_table(f, ops, i);
    const int32_t opcode = fb_i32_field(f, op, 4, 0);
    if (opcode < 0 || (uint32_t)opcode >= n_codes) goto fail;
    const size_t name = fb_deref(f, fb_field(f, fb_elem_table(f, codes, (uint32_t)opcode), 6));
    const char want[] = "EDGESR_SWIN_BLOCK";
    if (!name || fb_len(f, name) != sizeof want - 1 || !fb_ok(f, name + 4, sizeof want - 1) ||
        memcmp(f->data + name + 4, want, sizeof want - 1) != 0)
      continue;
    const size_t options = fb_deref(f, fb_field(f, op, 14));
    const size_t ins = fb_deref(f, fb_field(f, op, 6)), outs = fb_deref(f, fb_field(f, op, 8));
    const uint32_t n_options = fb_len(f, options);
    if (!options || !fb_ok(f, options + 4, n_options) || fb_len(f, ins) != 1 || fb_len(f, outs) != 1) goto fail;
    blocks[count].block = edgesr_swin_block_from_blob(f->data + options + 4, n_options);
    if (!blocks[count].block) goto fail;
    blocks[count].input = (int)rd_u32(f, ins + 4);
    blocks[count].output = (int)rd_u32(f, outs + 4);
    ++count;
  }
  *out = blocks;
  return count;
fail:
  for (int i = 0; i < count; ++i) edgesr_swin_block_destroy(blocks[i].block);
  free(blocks);
  return -1;
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

static int usage(void) {
  fprintf(stderr,
          "usage: edgesr_runner MODEL.tflite [--input TOKENS.f32] [--output OUT.f32] [--threads N] [--repeats R]\n"
          "                     [--warmup W] [--isa NAME] [--group G]\n"
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
  int threads = 1, repeats = 10, warmup = 2, group = 0;
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
  runner_block *blocks = NULL;
  const int count = load_blocks(&f, &blocks);
  if (count < 0) {
    fprintf(stderr, "edgesr_runner: %s is not an edgesr INT4 .tflite (or its EDGESR_SWIN_BLOCK ops are damaged)\n",
            model_path);
    free(raw);
    return 1;
  }
  /* Group G: the G-th maximal chain of blocks whose input is the previous block's output. */
  int first = -1, last = -1, chain = -1;
  for (int i = 0; i < count; ++i) {
    if (i == 0 || blocks[i].input != blocks[i - 1].output) ++chain;
    if (chain == group) {
      if (first < 0) first = i;
      last = i;
    }
  }
  int rc = 1;
  float *x = NULL, *y = NULL, *ws = NULL;
  double *times = NULL;
  if (first < 0) {
    fprintf(stderr, "edgesr_runner: %s has no group %d of EDGESR_SWIN_BLOCK ops (%d blocks)\n", model_path, group,
            count);
    goto done;
  }
  int tokens = 0, dim = 0;
  edgesr_swin_block_shape(blocks[first].block, &tokens, &dim);
  const size_t elems = (size_t)tokens * (size_t)dim;
  size_t wsf = 0;
  for (int i = first; i <= last; ++i) {
    const size_t w = edgesr_swin_block_workspace_floats(blocks[i].block);
    wsf = w > wsf ? w : wsf;
  }
  x = (float *)malloc(sizeof(float) * elems);
  y = (float *)malloc(sizeof(float) * elems);
  ws = (float *)malloc(sizeof(float) * wsf);
  times = (double *)malloc(sizeof(double) * (size_t)repeats);
  if (!x || !y || !ws || !times) goto done;
  if (input) {
    size_t in_size = 0;
    char *in = read_file(input, &in_size);
    if (!in || in_size != sizeof(float) * elems) {
      fprintf(stderr, "edgesr_runner: %s must hold %d x %d float32 tokens (%zu bytes)\n", input, tokens, dim,
              sizeof(float) * elems);
      free(in);
      goto done;
    }
    memcpy(x, in, in_size);
    free(in);
  } else {
    uint32_t s = 12345u; /* fixed seed: runs on different machines see the same tokens */
    for (size_t i = 0; i < elems; ++i) {
      s = s * 1664525u + 1013904223u;
      x[i] = (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
  }
  for (int r = -warmup; r < repeats; ++r) {
    const double t0 = now_ms();
    const float *src = x;
    for (int i = first; i <= last; ++i) {
      if (edgesr_swin_block_run(blocks[i].block, src, y, ws, threads) != 0) goto done;
      src = y;
    }
    if (r >= 0) times[r] = now_ms() - t0;
  }
  qsort(times, (size_t)repeats, sizeof(double), cmp_double);
  double mean = 0;
  for (int r = 0; r < repeats; ++r) mean += times[r] / repeats;
  printf("{\"model\": \"%s\", \"isa\": \"%s\", \"threads\": %d, \"group\": %d, \"blocks\": %d, \"tokens\": %d, "
         "\"dim\": %d, \"repeats\": %d, \"ms_min\": %.3f, \"ms_median\": %.3f, \"ms_mean\": %.3f, \"ms_max\": %.3f}\n",
         model_path, edgesr_isa_name(edgesr_active_isa()), threads, group, last - first + 1, tokens, dim, repeats,
         times[0], times[repeats / 2], mean, times[repeats - 1]);
  if (output) {
    FILE *fp = fopen(output, "wb");
    if (!fp || fwrite(y, sizeof(float), elems, fp) != elems) {
      fprintf(stderr, "edgesr_runner: cannot write %s\n", output);
      if (fp) fclose(fp);
      goto done;
    }
    fclose(fp);
  }
  rc = 0;
done:
  for (int i = 0; i < count; ++i) edgesr_swin_block_destroy(blocks[i].block);
  free(blocks);
  free(x);
  free(y);
  free(ws);
  free(times);
  free(raw);
  return rc;
}
