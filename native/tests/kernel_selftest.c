/* Self-test of the edgesr native kernels through the public API, for every ISA path this CPU runs.
 *
 * For each available path (forced in turn) and random shapes (odd sizes, K = 1, K not a multiple of any SIMD
 * width, every width 1..8): integer accumulators of the linear and the batched matmul must equal a plain
 * int64 reference exactly; codes must equal the reference quantizer (true division, round half to even) on
 * random values, values exactly at half steps and values outside the bounds; float outputs of every path must
 * equal the scalar path's bit for bit, and 1 and 3 threads must agree; a whole Swin block must agree across
 * paths up to quantizer ties and across thread counts bit for bit.
 *
 *   kernel_selftest [--expect-best NAME] [--rounds N]
 *
 * Exit status 0 when everything passes. Builds natively and cross (aarch64, run under qemu-user).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgesr_kernels.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng >> 16);
}
static int rndi(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }
static float rndf(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() & 0xffffff) / 16777216.0f; }

static int g_failures;
#define CHECK(cond, ...)                     \
  do {                                       \
    if (!(cond)) {                           \
      ++g_failures;                          \
      printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      printf(__VA_ARGS__);                   \
      printf("\n");                          \
    }                                        \
  } while (0)

static uint8_t ref_code(float v, float lo, float hi, int bits) {
  float step = (hi - lo) / (float)((1 << bits) - 1), t;
  t = v > lo ? v : lo;
  t = t < hi ? t : hi;
  return (uint8_t)(int)nearbyintf((t - lo) / step);
}

static void pack_bits(const uint8_t *codes, size_t count, int bits, uint8_t *out) {
  size_t i, bytes = (count * (size_t)bits + 7) / 8;
  memset(out, 0, bytes);
  for (i = 0; i < count; ++i) {
    size_t bit = i * (size_t)bits;
    unsigned v = (unsigned)codes[i] << (bit % 8);
    out[bit / 8] |= (uint8_t)v;
    if (bit / 8 + 1 < bytes) out[bit / 8 + 1] |= (uint8_t)(v >> 8);
  }
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    printf("out of memory\n");
    exit(2);
  }
  return p;
}

static void random_codes(uint8_t *c, size_t n, int bits) {
  size_t i;
  int mode = rndi(0, 3);
  for (i = 0; i < n; ++i) {
    unsigned L = (1u << bits) - 1u;
    c[i] = (uint8_t)(mode == 0 ? L : mode == 1 && (rnd() & 1) ? 0 : rnd() % (L + 1)); /* extremes included */
  }
}

static void test_codes(int isa) {
  int bits, it;
  for (bits = 1; bits <= 8; ++bits)
    for (it = 0; it < 4; ++it) {
      size_t n = (size_t)rndi(1, 300), i;
      float lo = rndf(-3.0f, 1.0f), hi = lo + rndf(0.01f, 4.0f), step = (hi - lo) / (float)((1 << bits) - 1);
      float *x = (float *)xmalloc(n * sizeof *x);
      uint8_t *c = (uint8_t *)xmalloc(n), *packed = (uint8_t *)xmalloc(n), *un = (uint8_t *)xmalloc(n);
      for (i = 0; i < n; ++i) {
        int kind = rndi(0, 4);
        if (kind == 0) x[i] = lo + ((float)rndi(0, (1 << bits) - 1) + 0.5f) * step; /* half steps */
        else if (kind == 4) /* next to half steps */
          x[i] = nextafterf(lo + ((float)rndi(0, (1 << bits) - 1) + 0.5f) * step, (rnd() & 1) ? INFINITY : -INFINITY);
        else if (kind == 1) x[i] = rndf(lo - 2.0f, hi + 2.0f);                       /* outside too */
        else x[i] = rndf(lo, hi);
      }
      edgesr_quantize_codes(x, n, lo, hi, bits, c);
      for (i = 0; i < n; ++i) {
        uint8_t r = ref_code(x[i], lo, hi, bits);
        if (c[i] != r) {
          CHECK(0, "%s codes bits=%d x=%.9g lo=%.9g hi=%.9g: %d != %d", edgesr_isa_name(isa), bits, x[i], lo, hi, c[i], r);
          break;
        }
      }
      pack_bits(c, n, bits, packed);
      CHECK(edgesr_unpack_codes(packed, n, bits, un) == 0 && memcmp(un, c, n) == 0, "unpack bits=%d", bits);
      free(x);
      free(c);
      free(packed);
      free(un);
    }
}

typedef struct {
  int m, n, k, bits;
} shape;

static shape random_shape(int it) {
  static const shape fixed[] = {{1, 1, 1, 4}, {1, 17, 1, 2}, {7, 1, 13, 8}, {64, 60, 60, 4}, {33, 180, 120, 3},
                                {5, 33, 65, 8}, {9, 16, 4, 1}, {64, 64, 10, 4}, {64, 10, 64, 4}, {130, 23, 31, 8}};
  shape s;
  if (it < (int)(sizeof fixed / sizeof fixed[0])) return fixed[it];
  s.m = rndi(1, 70);
  s.n = rndi(1, 70);
  s.k = rndi(1, 150);
  s.bits = rndi(1, 8);
  return s;
}

static int64_t ref_dot(const uint8_t *a, const uint8_t *b, int k) {
  int64_t s = 0;
  int i;
  for (i = 0; i < k; ++i) s += (int64_t)a[i] * b[i];
  return s;
}

/* Float outputs of the scalar path, filled when the scalar path runs first. */
typedef struct {
  float *linear, *bmm_t, *bmm_n;
} scalar_out;

static void test_linear_and_bmm(int isa, int rounds, int it0, scalar_out *ref) {
  int it;
  for (it = 0; it < rounds; ++it) {
    shape s;
    int batch, i, j, b;
    size_t nk, mk, mn;
    uint8_t *wc, *wp, *xc, *bc;
    int32_t *acc, *acc3;
    float *x, *bias, *y, *y3, *bf, *o1, *o2, *o3;
    float wlo, whi, xlo, xhi;
    edgesr_qlinear *layer;
    g_rng = 0x1234567ull + (uint64_t)(it0 + it) * 7919u; /* same data for every path */
    s = random_shape(it);
    batch = rndi(1, 4);
    nk = (size_t)s.n * s.k;
    mk = (size_t)s.m * s.k;
    mn = (size_t)s.m * s.n;
    wc = (uint8_t *)xmalloc(nk);
    wp = (uint8_t *)xmalloc(nk);
    xc = (uint8_t *)xmalloc(mk * batch);
    bc = (uint8_t *)xmalloc(nk * batch);
    acc = (int32_t *)xmalloc(mn * batch * sizeof *acc);
    acc3 = (int32_t *)xmalloc(mn * batch * sizeof *acc);
    x = (float *)xmalloc(mk * batch * sizeof *x);
    bf = (float *)xmalloc(nk * batch * sizeof *x);
    bias = (float *)xmalloc((size_t)s.n * sizeof *bias);
    y = (float *)xmalloc(mn * batch * sizeof *y);
    y3 = (float *)xmalloc(mn * batch * sizeof *y);
    o1 = (float *)xmalloc(mn * batch * sizeof *y);
    o2 = (float *)xmalloc(mn * batch * sizeof *y);
    o3 = (float *)xmalloc(mn * batch * sizeof *y);
    random_codes(wc, nk, s.bits);
    random_codes(xc, mk * batch, s.bits);
    random_codes(bc, nk * batch, s.bits);
    pack_bits(wc, nk, s.bits, wp);
    wlo = rndf(-1.0f, 0.0f);
    whi = wlo + rndf(0.1f, 2.0f);
    xlo = rndf(-2.0f, 0.5f);
    xhi = xlo + rndf(0.1f, 4.0f);
    for (i = 0; i < s.n; ++i) bias[i] = rndf(-1.0f, 1.0f);
    for (i = 0; i < (int)(mk * batch); ++i) x[i] = rndf(xlo - 0.5f, xhi + 0.5f);
    for (i = 0; i < (int)(nk * batch); ++i) bf[i] = rndf(wlo - 0.2f, whi + 0.2f);

    layer = edgesr_qlinear_create(s.n, s.k, s.bits, wp, wlo, whi, xlo, xhi, bias);
    CHECK(layer != NULL, "create");
    if (!layer) continue;
    /* Linear accumulators. */
    edgesr_qlinear_accumulate(layer, xc, s.m, acc, 1);
    edgesr_qlinear_accumulate(layer, xc, s.m, acc3, 3);
    for (i = 0; i < s.m; ++i)
      for (j = 0; j < s.n; ++j) {
        int64_t r = ref_dot(xc + (size_t)i * s.k, wc + (size_t)j * s.k, s.k);
        if (acc[(size_t)i * s.n + j] != r) {
          CHECK(0, "%s linear acc m=%d n=%d k=%d bits=%d at (%d,%d): %d != %lld", edgesr_isa_name(isa), s.m, s.n,
                s.k, s.bits, i, j, acc[(size_t)i * s.n + j], (long long)r);
          i = s.m;
          break;
        }
      }
    CHECK(memcmp(acc, acc3, mn * sizeof *acc) == 0, "%s linear acc threads", edgesr_isa_name(isa));
    /* Linear float output: threads agree, every path equals scalar. */
    edgesr_qlinear_run(layer, x, s.m, y, 1);
    edgesr_qlinear_run(layer, x, s.m, y3, 3);
    CHECK(memcmp(y, y3, mn * sizeof *y) == 0, "%s linear run threads", edgesr_isa_name(isa));
    edgesr_qlinear_destroy(layer);

    /* Batched matmul accumulators. */
    edgesr_qbmm_accumulate(xc, bc, batch, s.m, s.k, s.n, acc, 1);
    edgesr_qbmm_accumulate(xc, bc, batch, s.m, s.k, s.n, acc3, 3);
    for (b = 0; b < batch; ++b)
      for (i = 0; i < s.m; ++i)
        for (j = 0; j < s.n; ++j) {
          int64_t r = ref_dot(xc + ((size_t)b * s.m + i) * s.k, bc + ((size_t)b * s.n + j) * s.k, s.k);
          if (acc[((size_t)b * s.m + i) * s.n + j] != r) {
            CHECK(0, "%s bmm acc batch=%d m=%d n=%d k=%d at (%d,%d,%d): %d != %lld", edgesr_isa_name(isa), batch, s.m,
                  s.n, s.k, b, i, j, acc[((size_t)b * s.m + i) * s.n + j], (long long)r);
            b = batch;
            i = s.m;
            break;
          }
        }
    CHECK(memcmp(acc, acc3, mn * batch * sizeof *acc) == 0, "%s bmm acc threads", edgesr_isa_name(isa));
    /* Batched matmul floats, B as N x K and as K x N. */
    edgesr_qbmm(x, bf, batch, s.m, s.k, s.n, 1, xlo, xhi, wlo, whi, s.bits, o1, 1);
    edgesr_qbmm(x, bf, batch, s.m, s.k, s.n, 1, xlo, xhi, wlo, whi, s.bits, o3, 3);
    CHECK(memcmp(o1, o3, mn * batch * sizeof *o1) == 0, "%s bmm threads", edgesr_isa_name(isa));
    edgesr_qbmm(x, bf, batch, s.m, s.k, s.n, 0, xlo, xhi, wlo, whi, s.bits, o2, 2);

    if (isa == EDGESR_ISA_SCALAR) {
      ref[it].linear = y;
      ref[it].bmm_t = o1;
      ref[it].bmm_n = o2;
      y = o1 = o2 = NULL;
    } else {
      CHECK(memcmp(y, ref[it].linear, mn * sizeof *y) == 0, "%s linear run != scalar (m=%d n=%d k=%d bits=%d)",
            edgesr_isa_name(isa), s.m, s.n, s.k, s.bits);
      CHECK(memcmp(o1, ref[it].bmm_t, mn * batch * sizeof *y) == 0, "%s bmm (B^T) != scalar", edgesr_isa_name(isa));
      CHECK(memcmp(o2, ref[it].bmm_n, mn * batch * sizeof *y) == 0, "%s bmm (B) != scalar", edgesr_isa_name(isa));
    }
    free(wc);
    free(wp);
    free(xc);
    free(bc);
    free(acc);
    free(acc3);
    free(x);
    free(bf);
    free(bias);
    free(y);
    free(y3);
    free(o1);
    free(o2);
    free(o3);
  }
}

static void test_bad_arguments(void) {
  uint8_t packed[4] = {0x21, 0x43, 0x65, 0x87}, codes[8];
  float x[4] = {0, 1, 2, 3};
  CHECK(edgesr_qlinear_create(2, 2, 0, packed, 0, 1, 0, 1, NULL) == NULL, "bits 0");
  CHECK(edgesr_qlinear_create(2, 2, 9, packed, 0, 1, 0, 1, NULL) == NULL, "bits 9");
  CHECK(edgesr_qlinear_create(0, 2, 4, packed, 0, 1, 0, 1, NULL) == NULL, "n 0");
  CHECK(edgesr_qlinear_create(2, 2, 4, NULL, 0, 1, 0, 1, NULL) == NULL, "NULL weights");
  CHECK(edgesr_unpack_codes(packed, 8, 0, codes) == -1, "unpack bits 0");
  CHECK(edgesr_unpack_codes(packed, 8, 9, codes) == -1, "unpack bits 9");
  CHECK(edgesr_force_isa(99) == -1 && edgesr_force_isa(-7) == -1, "force invalid");
  memset(codes, 7, sizeof codes);
  edgesr_quantize_codes(x, 4, 0, 1, 9, codes); /* ignored */
  CHECK(codes[0] == 7, "quantize with bits 9 writes nothing");
  edgesr_quantize_codes(NULL, 4, 0, 1, 4, codes);
  edgesr_qlinear_run(NULL, x, 1, x, 1);
  edgesr_qlinear_destroy(NULL);
  edgesr_qbmm(NULL, x, 1, 1, 1, 1, 0, 0, 1, 0, 1, 4, x, 1);
  edgesr_qbmm_accumulate(NULL, codes, 1, 1, 1, 1, NULL, 1);
}

/* Whole Swin block (window 8, so the attention takes its 64-token vector path), shifted, 16 x 16 tokens: every
 * path must agree with the first path run (the scalar one) up to rare quantizer ties (at most 2 tokens of
 * 256 off by more than 1e-4), and 1 vs 3 threads must agree bit for bit. The block's numerics against the
 * PyTorch model are tested by tests/test_native_swin_block.py. */
#define SB_C 12
#define SB_F 24
#define SB_T 256
static float g_block_ref[SB_T * SB_C];
static int g_block_ref_set;

static void test_swin_block(int isa) {
  edgesr_swin_block_desc d;
  uint8_t codes[SB_F * SB_C], packed[6][SB_F * SB_C];
  float norms[4 * SB_C], table[225 * 2], biases[6][SB_F], x[SB_T * SB_C], y1[SB_T * SB_C], y3[SB_T * SB_C];
  const float ab[8] = {-1.5f, 1.5f, -2.0f, 2.0f, 0.0f, 0.6f, -2.0f, 2.0f};
  edgesr_swin_block *blk;
  float *ws;
  int i, l, bad = 0;
  uint64_t saved = g_rng;
  g_rng = 7;
  memset(&d, 0, sizeof d);
  d.dim = SB_C, d.heads = 2, d.window = 8, d.shift = 4, d.hidden = SB_F, d.height = 16, d.width = 16, d.bits = 4;
  d.eps1 = d.eps2 = 1e-5f, d.q_scale = 0.41f;
  for (i = 0; i < 4 * SB_C; ++i) norms[i] = rndf(0.5f, 1.5f);
  for (i = 0; i < 450; ++i) table[i] = rndf(-1.0f, 1.0f);
  d.norm1_weight = norms, d.norm1_bias = norms + SB_C, d.norm2_weight = norms + 2 * SB_C, d.norm2_bias = norms + 3 * SB_C;
  d.bias_table = table;
  for (l = 0; l < 6; ++l) {
    const int n = l == 4 ? SB_F : SB_C, k = l == 5 ? SB_F : SB_C;
    for (i = 0; i < n * k; ++i) codes[i] = (uint8_t)rndi(0, 15);
    pack_bits(codes, (size_t)n * k, 4, packed[l]);
    for (i = 0; i < n; ++i) biases[l][i] = rndf(-0.2f, 0.2f);
    d.weight_packed[l] = packed[l], d.bias[l] = biases[l];
    d.x_bounds[l][0] = -2.5f, d.x_bounds[l][1] = 2.5f, d.w_bounds[l][0] = -0.4f, d.w_bounds[l][1] = 0.4f;
  }
  memcpy(d.attn_bounds, ab, sizeof ab);
  for (i = 0; i < SB_T * SB_C; ++i) x[i] = rndf(-2.0f, 2.0f);
  blk = edgesr_swin_block_create(&d);
  CHECK(blk != NULL, "%s: swin block create", edgesr_isa_name(isa));
  if (!blk) return;
  ws = (float *)xmalloc(sizeof(float) * edgesr_swin_block_workspace_floats(blk));
  CHECK(edgesr_swin_block_run(blk, x, y1, ws, 1) == 0, "swin block run");
  CHECK(edgesr_swin_block_run(blk, x, y3, NULL, 3) == 0, "swin block run, own workspace");
  CHECK(!memcmp(y1, y3, sizeof y1), "%s: swin block 1 vs 3 threads differ", edgesr_isa_name(isa));
  for (i = 0; i < SB_T * SB_C; ++i) CHECK(isfinite(y1[i]), "swin block output not finite");
  if (!g_block_ref_set) {
    memcpy(g_block_ref, y1, sizeof y1);
    g_block_ref_set = 1;
  }
  for (i = 0; i < SB_T; ++i) {
    int c, off = 0;
    for (c = 0; c < SB_C; ++c) off |= fabsf(y1[i * SB_C + c] - g_block_ref[i * SB_C + c]) > 1e-4f;
    bad += off;
  }
  CHECK(bad <= 2, "%s: swin block differs from the first path on %d tokens", edgesr_isa_name(isa), bad);
  d.shift = 8; /* == window: rejected */
  CHECK(edgesr_swin_block_create(&d) == NULL, "swin block with shift == window accepted");
  edgesr_swin_block_destroy(blk);
  free(ws);
  g_rng = saved;
}

int main(int argc, char **argv) {
  const char *expect = NULL;
  int rounds = 40, isa, i;
  scalar_out *ref;
  for (i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--expect-best") && i + 1 < argc) expect = argv[++i];
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
  }
  printf("edgesr kernels %s, automatic dispatch: %s\n", edgesr_version(), edgesr_isa_name(edgesr_active_isa()));
  if (expect) CHECK(!strcmp(expect, edgesr_isa_name(edgesr_active_isa())), "expected dispatch to pick %s", expect);
  ref = (scalar_out *)calloc((size_t)rounds, sizeof *ref);
  test_bad_arguments();
  for (isa = 0; isa < EDGESR_ISA_COUNT; ++isa) {
    int before = g_failures;
    if (!edgesr_isa_available(isa)) {
      printf("%-13s not available\n", edgesr_isa_name(isa));
      continue;
    }
    edgesr_force_isa(isa);
    g_rng = 42;
    test_codes(isa);
    test_linear_and_bmm(isa, rounds, 0, ref);
    test_swin_block(isa);
    printf("%-13s %s\n", edgesr_isa_name(isa), g_failures == before ? "PASS" : "FAIL");
  }
  edgesr_force_isa(-1);
  for (i = 0; i < rounds; ++i) {
    free(ref[i].linear);
    free(ref[i].bmm_t);
    free(ref[i].bmm_n);
  }
  free(ref);
  printf("%s (%d failures)\n", g_failures ? "FAILED" : "ALL PASSED", g_failures);
  return g_failures ? 1 : 0;
}
