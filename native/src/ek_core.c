/* edgesr native kernels: public API, run-time dispatch, layer preparation and the threaded drivers.
 * Compiled without ISA flags; the vector code lives in the per-ISA translation units (see ek_internal.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ek_internal.h"

#if defined(EK_X86) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#if defined(EK_ARM64) && (defined(__linux__) || defined(__ANDROID__))
#include <sys/auxv.h>
#endif
#if defined(EK_ARM64) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#define EK_VERSION "0.1.0"
#define EK_ROW_BLOCK 64 /* activation rows quantized and multiplied at a time (a multiple of every kernel's MR) */
#define EK_STACK_SCRATCH 49152 /* per linear task: a row block's codes and sums, and for a fused output its rows */

/* ------------------------------------------------------------------------------------------------------------
 * CPU features and dispatch
 * ---------------------------------------------------------------------------------------------------------- */

static const ek_ops *const g_table[EDGESR_ISA_COUNT] = {
    &ek_ops_scalar,
#ifdef EK_HAVE_AVX2
    &ek_ops_avx2,
#else
    NULL,
#endif
#ifdef EK_HAVE_AVX512VNNI
    &ek_ops_avx512vnni,
#else
    NULL,
#endif
#ifdef EK_HAVE_NEON
    &ek_ops_neon,
#else
    NULL,
#endif
#ifdef EK_HAVE_DOTPROD
    &ek_ops_dotprod,
#else
    NULL,
#endif
#ifdef EK_HAVE_I8MM
    &ek_ops_i8mm,
#else
    NULL,
#endif
};

static int g_features; /* bit i: ISA i usable; bit 31: detection done */
static int g_forced = -1;

#if defined(EK_X86) && (defined(__GNUC__) || defined(__clang__))
static int detect_cpu(void) {
  unsigned a, b, c, d, xcr0_lo = 0, xcr0_hi = 0;
  int f = 1 << EDGESR_ISA_SCALAR, ymm = 0, zmm = 0, fma;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  fma = (c >> 12) & 1;
  if ((c & (1u << 27)) && (c & (1u << 28))) { /* OSXSAVE and AVX */
    __asm__ __volatile__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    ymm = (xcr0_lo & 0x6u) == 0x6u;   /* SSE and AVX state enabled by the OS */
    zmm = (xcr0_lo & 0xe6u) == 0xe6u; /* plus opmask and both ZMM halves */
  }
  (void)xcr0_hi;
  if (__get_cpuid_max(0, NULL) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  if (ymm && fma && (b & (1u << 5))) f |= 1 << EDGESR_ISA_AVX2; /* AVX2 and FMA3 */
  if (zmm && fma && (b & (1u << 5)) && (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) &&
      (b & (1u << 31)) && (c & (1u << 11)))
    f |= 1 << EDGESR_ISA_AVX512_VNNI; /* AVX-512 F, DQ, BW, VL and VNNI */
  return f;
}
#elif defined(EK_ARM64) && (defined(__linux__) || defined(__ANDROID__))
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1ul << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1ul << 13)
#endif
#ifndef AT_HWCAP2
#define AT_HWCAP2 26
#endif
static int detect_cpu(void) {
  unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  int f = 1 << EDGESR_ISA_SCALAR;
  if (hw & HWCAP_ASIMD) {
    f |= 1 << EDGESR_ISA_NEON;
    if (hw & HWCAP_ASIMDDP) {
      f |= 1 << EDGESR_ISA_NEON_DOTPROD;
      if (hw2 & HWCAP2_I8MM) f |= 1 << EDGESR_ISA_NEON_I8MM;
    }
  }
  return f;
}
#elif defined(EK_ARM64) && defined(__APPLE__)
static int sysctl_flag(const char *name) {
  int v = 0;
  size_t len = sizeof v;
  return sysctlbyname(name, &v, &len, NULL, 0) == 0 && v;
}
static int detect_cpu(void) {
  int f = (1 << EDGESR_ISA_SCALAR) | (1 << EDGESR_ISA_NEON);
  if (sysctl_flag("hw.optional.arm.FEAT_DotProd")) {
    f |= 1 << EDGESR_ISA_NEON_DOTPROD;
    if (sysctl_flag("hw.optional.arm.FEAT_I8MM")) f |= 1 << EDGESR_ISA_NEON_I8MM;
  }
  return f;
}
#elif defined(EK_ARM64)
static int detect_cpu(void) { return (1 << EDGESR_ISA_SCALAR) | (1 << EDGESR_ISA_NEON); }
#else
static int detect_cpu(void) { return 1 << EDGESR_ISA_SCALAR; }
#endif

static int features(void) {
  int f = __atomic_load_n(&g_features, __ATOMIC_ACQUIRE);
  if (!(f & (1 << 30))) {
    int i;
    f = detect_cpu();
    for (i = 0; i < EDGESR_ISA_COUNT; ++i)
      if (!g_table[i]) f &= ~(1 << i);
    f |= 1 << 30;
    __atomic_store_n(&g_features, f, __ATOMIC_RELEASE); /* racing threads store the same value */
  }
  return f;
}

int edgesr_isa_available(int isa) {
  if (isa < 0 || isa >= EDGESR_ISA_COUNT) return 0;
  return (features() >> isa) & 1;
}

static int best_isa(void) {
  static const int order[] = {EDGESR_ISA_AVX512_VNNI, EDGESR_ISA_AVX2, EDGESR_ISA_NEON_I8MM, EDGESR_ISA_NEON_DOTPROD,
                              EDGESR_ISA_NEON};
  size_t i;
  for (i = 0; i < sizeof order / sizeof order[0]; ++i)
    if (edgesr_isa_available(order[i])) return order[i];
  return EDGESR_ISA_SCALAR;
}

int edgesr_force_isa(int isa) {
  if (isa == -1) {
    __atomic_store_n(&g_forced, -1, __ATOMIC_RELEASE);
    return 0;
  }
  if (!edgesr_isa_available(isa)) return -1;
  __atomic_store_n(&g_forced, isa, __ATOMIC_RELEASE);
  return 0;
}

int edgesr_active_isa(void) {
  int f = __atomic_load_n(&g_forced, __ATOMIC_ACQUIRE);
  return f >= 0 ? f : best_isa();
}

static const ek_ops *active_ops(void) { return g_table[edgesr_active_isa()]; }

const char *edgesr_isa_name(int isa) {
  static const char *const names[EDGESR_ISA_COUNT] = {"scalar", "avx2", "avx512_vnni", "neon", "neon_dotprod",
                                                      "neon_i8mm"};
  if (isa < 0 || isa >= EDGESR_ISA_COUNT) return "unknown";
  return names[isa];
}

const char *edgesr_version(void) { return EK_VERSION; }

/* ------------------------------------------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------------------------------------------- */

/* 64-byte aligned heap block; the original pointer sits just before the aligned one. */
static void *aligned_malloc(size_t size) {
  unsigned char *raw = (unsigned char *)malloc(size + 64 + sizeof(void *));
  uintptr_t p;
  if (!raw) return NULL;
  p = ((uintptr_t)(raw + sizeof(void *)) + 63u) & ~(uintptr_t)63u;
  ((void **)p)[-1] = raw;
  return (void *)p;
}

static void aligned_free(void *p) {
  if (p) free(((void **)p)[-1]);
}

/* Scratch that lives on the stack when small. */
typedef struct {
  unsigned char stack[EK_STACK_SCRATCH] __attribute__((aligned(64)));
  void *heap;
} scratch;

static unsigned char *scratch_get(scratch *s, size_t size) {
  s->heap = NULL;
  if (size <= sizeof s->stack) return s->stack;
  s->heap = aligned_malloc(size);
  return (unsigned char *)s->heap;
}

static size_t align64(size_t v) { return (v + 63u) & ~(size_t)63u; }

static int bits_ok(int bits) { return bits >= 1 && bits <= 8; }

/* Copy m rows of k codes into zero-padded rows of kp bytes, with row sums. */
static void pad_codes(const uint8_t *src, size_t lds, int m, int k, int kp, uint8_t *dst, int32_t *rowsum) {
  int r, i;
  for (r = 0; r < m; ++r) {
    const uint8_t *s = src + (size_t)r * lds;
    uint8_t *d = dst + (size_t)r * kp;
    int32_t t = 0;
    for (i = 0; i < k; ++i) t += s[i];
    memcpy(d, s, (size_t)k);
    memset(d + k, 0, (size_t)(kp - k));
    if (rowsum) rowsum[r] = t;
  }
}

/* ------------------------------------------------------------------------------------------------------------
 * Codes
 * ---------------------------------------------------------------------------------------------------------- */

void edgesr_quantize_codes(const float *x, size_t n, float lower, float upper, int bits, uint8_t *codes) {
  const ek_ops *ops;
  ek_qparams q;
  size_t off;
  if (!x || !codes || !bits_ok(bits)) return;
  ops = active_ops();
  q = ek_make_qparams(lower, upper, bits);
  for (off = 0; off < n;) {
    int chunk = (int)(n - off < ((size_t)1 << 24) ? n - off : ((size_t)1 << 24));
    ops->quantize_rows(x + off, (size_t)chunk, 1, chunk, chunk, &q, codes + off, (size_t)chunk, NULL);
    off += (size_t)chunk;
  }
}

int edgesr_unpack_codes(const uint8_t *packed, size_t count, int bits, uint8_t *codes) {
  size_t i;
  if (!bits_ok(bits) || (count && (!packed || !codes))) return -1;
  if (bits == 8) {
    memcpy(codes, packed, count);
  } else if (bits == 4) {
    for (i = 0; i + 1 < count; i += 2) {
      codes[i] = packed[i / 2] & 15u;
      codes[i + 1] = packed[i / 2] >> 4;
    }
    if (i < count) codes[i] = packed[i / 2] & 15u;
  } else {
    const unsigned mask = (1u << bits) - 1u;
    size_t bytes = (count * (size_t)bits + 7) / 8;
    for (i = 0; i < count; ++i) {
      size_t bit = i * (size_t)bits, byte = bit / 8;
      unsigned v = packed[byte];
      if (byte + 1 < bytes) v |= (unsigned)packed[byte + 1] << 8;
      codes[i] = (uint8_t)((v >> (bit % 8)) & mask);
    }
  }
  return 0;
}

/* ------------------------------------------------------------------------------------------------------------
 * Quantized linear
 * ---------------------------------------------------------------------------------------------------------- */

struct edgesr_qlinear {
  const ek_ops *ops; /* the path active at creation: the packed layout belongs to it */
  int n, k, kp, bits;
  ek_qparams xq;
  float alpha; /* s_x s_w */
  float c_rx;  /* s_x l_w */
  uint8_t *w;  /* packed weight codes */
  int ones;    /* the packed weights carry a channel of ones (the kernel computes the row sums) */
  int32_t *cw; /* per-channel code sums */
  float *ct;   /* per-channel constant term: l_x s_w CW[n] + K l_x l_w + bias[n], zero padded */
};

void edgesr_qlinear_shape(const edgesr_qlinear *lin, int *n, int *k) {
  if (n) *n = lin ? lin->n : 0;
  if (k) *k = lin ? lin->k : 0;
}

edgesr_qlinear *edgesr_qlinear_create(int n, int k, int bits, const uint8_t *weight_packed, float w_lower,
                                      float w_upper, float x_lower, float x_upper, const float *bias) {
  edgesr_qlinear *layer;
  const ek_ops *ops;
  ek_qparams wq;
  uint8_t *codes = NULL, *rows = NULL;
  size_t count;
  int i, npad;
  double sw, lw, lx;
  if (n < 1 || k < 1 || !bits_ok(bits) || !weight_packed) return NULL;
  if ((long long)n * (long long)k > (1ll << 31) - 1) return NULL;
  ops = active_ops();
  layer = (edgesr_qlinear *)calloc(1, sizeof *layer);
  if (!layer) return NULL;
  layer->ops = ops;
  layer->n = n;
  layer->k = k;
  layer->kp = ek_round_up(k, ops->kpad);
  layer->bits = bits;
  layer->xq = ek_make_qparams(x_lower, x_upper, bits);
  wq = ek_make_qparams(w_lower, w_upper, bits);
  npad = ek_round_up(n, 64);
  count = (size_t)n * (size_t)k;
  codes = (uint8_t *)malloc(count);
  rows = (uint8_t *)calloc((size_t)n * (size_t)layer->kp, 1);
  layer->w = (uint8_t *)aligned_malloc(ops->packed_size(n, layer->kp, bits));
  layer->cw = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
  layer->ct = (float *)aligned_malloc(sizeof(float) * (size_t)npad);
  if (!codes || !rows || !layer->w || !layer->cw || !layer->ct) goto fail;
  edgesr_unpack_codes(weight_packed, count, bits, codes);
  pad_codes(codes, (size_t)k, n, k, layer->kp, rows, layer->cw);
  ops->pack(rows, n, layer->kp, bits, layer->w);
  layer->ones = ops->add_ones_channel ? ops->add_ones_channel(layer->w, n, layer->kp, bits) : 0;

  /* Constants in double, rounded once: the same for every path. An invalid quantizer (upper <= lower)
   * has step 0 and every code 0, so its values are all `lower`. */
  sw = wq.step;
  lw = w_lower;
  lx = x_lower;
  layer->alpha = (float)((double)layer->xq.step * sw);
  layer->c_rx = (float)((double)layer->xq.step * lw);
  for (i = 0; i < npad; ++i) layer->ct[i] = 0.0f;
  for (i = 0; i < n; ++i)
    layer->ct[i] = (float)(lx * sw * (double)layer->cw[i] + (double)k * lx * lw + (bias ? (double)bias[i] : 0.0));
  free(codes);
  free(rows);
  return layer;
fail:
  free(codes);
  free(rows);
  edgesr_qlinear_destroy(layer);
  return NULL;
}

void edgesr_qlinear_destroy(edgesr_qlinear *layer) {
  if (!layer) return;
  aligned_free(layer->w);
  free(layer->cw);
  aligned_free(layer->ct);
  free(layer);
}

typedef struct {
  const edgesr_qlinear *layer;
  const float *x;          /* float mode */
  const uint8_t *x_codes;  /* accumulate mode; or, for float output, codes already padded to kp (ek_qlinear_run_ex) */
  const int32_t *x_rowsum; /* float output from x_codes: their row sums */
  int m;
  float *y;
  int32_t *acc;
  ek_rows_hook hook; /* float output: called on each row block of it while it is in cache */
  void *hook_arg;
  int y_scratch; /* with hook: y is a per-thread row block, not the output */
  int next;      /* next row block to take (atomic) */
} linear_ctx;

/* Row blocks are handed out dynamically: a thread that starts late (a busy core, a little core) takes fewer. */
static void linear_task(void *vctx, int tid, int nt) {
  linear_ctx *c = (linear_ctx *)vctx;
  const edgesr_qlinear *L = c->layer;
  const int kp = L->kp, k = L->k, n = L->n;
  const size_t code_bytes = align64((size_t)EK_ROW_BLOCK * kp);
  const size_t sums_bytes = EK_ROW_BLOCK * (sizeof(int32_t) + sizeof(float)); /* a multiple of 64 */
  int rb, i;
  scratch s;
  unsigned char *buf;
  uint8_t *codes;
  int32_t *rx;
  float *rt, *yb;
  ek_gemm_args a;
  (void)tid;
  (void)nt;
  buf = scratch_get(&s, code_bytes + sums_bytes + (c->y_scratch ? (size_t)EK_ROW_BLOCK * n * sizeof(float) : 0));
  if (!buf) return;
  codes = buf;
  rx = (int32_t *)(buf + code_bytes);
  rt = (float *)(rx + EK_ROW_BLOCK);
  yb = c->y_scratch ? (float *)(buf + code_bytes + sums_bytes) : NULL;

  memset(&a, 0, sizeof a);
  a.x = codes;
  a.ldx = (size_t)kp;
  a.k = k;
  a.kp = kp;
  a.n = n;
  a.bits = L->bits;
  a.rx = rx;
  a.w = L->w;
  a.alpha = L->alpha;
  a.rt = rt;
  a.ct = L->ct;
  a.ldy = (size_t)n;
  a.ldacc = (size_t)n;
  a.ones_channel = L->ones;
  a.c_rx = L->c_rx;
  while ((rb = EK_ROW_BLOCK * __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->m) {
    int rows = ek_min(EK_ROW_BLOCK, c->m - rb);
    a.m = rows;
    if (!c->acc) { /* float output */
      if (c->x_codes) { /* codes and row sums made by the caller */
        a.x = c->x_codes + (size_t)rb * kp;
        if (!L->ones) memcpy(rx, c->x_rowsum + rb, sizeof(int32_t) * (size_t)rows);
      } else {
        a.x = codes;
        L->ops->quantize_rows(c->x + (size_t)rb * k, (size_t)k, rows, k, kp, &L->xq, codes, (size_t)kp,
                              L->ones ? NULL : rx);
      }
      if (!L->ones)
        for (i = 0; i < rows; ++i) rt[i] = L->c_rx * (float)rx[i];
      a.y = yb ? yb : c->y + (size_t)rb * n;
    } else {
      pad_codes(c->x_codes + (size_t)rb * k, (size_t)k, rows, k, kp, codes, rx);
      a.acc = c->acc + (size_t)rb * n;
    }
    L->ops->gemm(&a);
    if (c->hook) c->hook(c->hook_arg, a.y, rb, rows);
  }
  if (s.heap) aligned_free(s.heap);
}

static int linear_threads(int threads, int m) {
  int nt = ek_clamp_threads(threads), blocks = (m + EK_ROW_BLOCK - 1) / EK_ROW_BLOCK;
  return nt < blocks ? nt : blocks;
}

static void linear_launch(linear_ctx *c, int threads) {
  c->next = 0;
  ek_parallel(linear_threads(threads, c->m), linear_task, c);
}

void edgesr_qlinear_run(const edgesr_qlinear *layer, const float *x, int m, float *y, int threads) {
  if (layer && x && y && m >= 1) ek_qlinear_run_ex(layer, x, NULL, NULL, m, y, NULL, NULL, threads);
}

void ek_qlinear_run_ex(const edgesr_qlinear *layer, const float *x, const uint8_t *x_codes, const int32_t *x_rowsum,
                       int m, float *y, ek_rows_hook hook, void *hook_arg, int threads) {
  linear_ctx c;
  memset(&c, 0, sizeof c);
  c.layer = layer;
  c.x = x;
  c.x_codes = x_codes;
  c.x_rowsum = x_rowsum;
  c.m = m;
  c.y = y;
  c.y_scratch = !y; /* no output buffer: the hook gets a per-thread block */
  c.hook = hook;
  c.hook_arg = hook_arg;
  linear_launch(&c, threads);
}

int ek_qlinear_padded_k(const edgesr_qlinear *layer) { return layer->kp; }

void ek_qlinear_quantize_input(const edgesr_qlinear *layer, const float *x, int rows, uint8_t *codes,
                               int32_t *rowsum) {
  layer->ops->quantize_rows(x, (size_t)layer->k, rows, layer->k, layer->kp, &layer->xq, codes, (size_t)layer->kp,
                            layer->ones ? NULL : rowsum); /* with a ones channel the GEMM finds the sums itself */
}

void edgesr_qlinear_accumulate(const edgesr_qlinear *layer, const uint8_t *x_codes, int m, int32_t *acc,
                               int threads) {
  linear_ctx c;
  if (!layer || !x_codes || !acc || m < 1) return;
  memset(&c, 0, sizeof c);
  c.layer = layer;
  c.x_codes = x_codes;
  c.m = m;
  c.acc = acc;
  linear_launch(&c, threads);
}

/* ------------------------------------------------------------------------------------------------------------
 * Quantized batched matmul
 * ---------------------------------------------------------------------------------------------------------- */

typedef struct {
  const ek_ops *ops;
  int batch, m, k, n, kp, bits, b_transposed;
  /* float mode */
  const float *a, *b;
  float *out;
  ek_qparams aq, bq;
  float alpha, c_rx;
  float c_cb, c_k;
  /* accumulate mode */
  const uint8_t *a_codes, *b_codes;
  int32_t *acc;
  /* B of every batch prepared up front (when the batch is split by rows) */
  uint8_t *b_packed;
  float *b_ct;
  size_t packed_stride; /* bytes of one packed B */
  int ct_stride;        /* floats of one ct */
  int row_split;        /* tasks split rows of each batch instead of batches */
  int next;             /* next unit of work (atomic): a batch, or a (batch, row block) when row_split */
  int ones;             /* row_split: the prepared Bs carry a channel of ones (see ek_gemm_args.ones_channel) */
} bmm_ctx;

static size_t bmm_b_scratch(const bmm_ctx *c) {
  return align64((size_t)c->n * c->kp) + align64(ek_prepare_b_scratch(c->n, c->k)) +
         align64(sizeof(int32_t) * (size_t)ek_round_up(c->n, 16));
}

/* Codes of B[b] packed for the kernel, and the per-column constant term. Returns the ones-channel flag. */
static int bmm_prepare_b(const bmm_ctx *c, int b, unsigned char *tmp, uint8_t *packed, float *ct) {
  const int n = c->n, k = c->k, kp = c->kp;
  uint8_t *rows = tmp;
  uint8_t *tr = tmp + align64((size_t)n * kp);
  int32_t *cb = (int32_t *)(tr + align64(ek_prepare_b_scratch(n, k)));
  int i, j;
  if (c->b_codes) {
    pad_codes(c->b_codes + (size_t)b * n * k, (size_t)k, n, k, kp, rows, cb);
    c->ops->pack(rows, n, kp, c->bits, packed);
  } else if (c->ops->prepare_b && c->bq.valid) {
    c->ops->prepare_b(c->b + (size_t)b * n * k, n, k, kp, c->b_transposed, &c->bq, c->bits, tr, packed, cb);
  } else if (c->b_transposed) {
    c->ops->quantize_rows(c->b + (size_t)b * n * k, (size_t)k, n, k, kp, &c->bq, rows, (size_t)kp, cb);
    c->ops->pack(rows, n, kp, c->bits, packed);
  } else {
    /* B[b] is K x N: codes in that order, then transposed to N rows of K. */
    c->ops->quantize_rows(c->b + (size_t)b * k * n, (size_t)n, k, n, n, &c->bq, tr, (size_t)n, NULL);
    for (j = 0; j < n; ++j) {
      uint8_t *d = rows + (size_t)j * kp;
      const uint8_t *s = tr + j;
      int32_t t = 0;
      for (i = 0; i < k; ++i) {
        d[i] = s[(size_t)i * n];
        t += d[i];
      }
      memset(d + k, 0, (size_t)(kp - k));
      cb[j] = t;
    }
    c->ops->pack(rows, n, kp, c->bits, packed);
  }
  if (ct) {
    /* float mul then add (no contraction): the same on every path */
    for (j = 0; j < n; ++j) ct[j] = c->c_cb * (float)cb[j] + c->c_k;
    for (; j < c->ct_stride; ++j) ct[j] = 0.0f;
  }
  /* 1 if the kernel takes the row sums of A from a channel of ones added to B (the same for every batch) */
  return c->ops->add_ones_channel ? c->ops->add_ones_channel(packed, n, kp, c->bits) : 0;
}

/* Rows [r0, r1) of batch b with a prepared B. */
static void bmm_rows(const bmm_ctx *c, int b, int r0, int r1, const uint8_t *packed, const float *ct, int ones,
                     unsigned char *abuf) {
  const int k = c->k, kp = c->kp, n = c->n, m = c->m;
  uint8_t *codes = abuf;
  int32_t *rx = (int32_t *)(abuf + align64((size_t)EK_ROW_BLOCK * kp));
  float *rt = (float *)(rx + EK_ROW_BLOCK);
  ek_gemm_args a;
  int rb, i;
  memset(&a, 0, sizeof a);
  a.x = codes;
  a.ldx = (size_t)kp;
  a.k = k;
  a.kp = kp;
  a.n = n;
  a.bits = c->bits;
  a.rx = rx;
  a.w = packed;
  a.alpha = c->alpha;
  a.rt = rt;
  a.ct = ct;
  a.ldy = (size_t)n;
  a.ldacc = (size_t)n;
  a.ones_channel = ones;
  a.c_rx = c->c_rx;
  for (rb = r0; rb < r1; rb += EK_ROW_BLOCK) {
    int rows = ek_min(EK_ROW_BLOCK, r1 - rb);
    size_t row0 = (size_t)b * m + rb;
    a.m = rows;
    if (c->out) {
      c->ops->quantize_rows(c->a + row0 * k, (size_t)k, rows, k, kp, &c->aq, codes, (size_t)kp, ones ? NULL : rx);
      if (!ones)
        for (i = 0; i < rows; ++i) rt[i] = c->c_rx * (float)rx[i];
      a.y = c->out + row0 * n;
    } else {
      pad_codes(c->a_codes + row0 * k, (size_t)k, rows, k, kp, codes, rx);
      a.acc = c->acc + row0 * n;
    }
    c->ops->gemm(&a);
  }
}

static size_t bmm_a_scratch(const bmm_ctx *c) {
  return align64((size_t)EK_ROW_BLOCK * c->kp) + EK_ROW_BLOCK * (sizeof(int32_t) + sizeof(float));
}

static void bmm_task(void *vctx, int tid, int nt) {
  bmm_ctx *c = (bmm_ctx *)vctx;
  scratch s;
  unsigned char *buf;
  int u;
  (void)tid;
  (void)nt;
  if (c->row_split) {
    /* Units are (batch, row block) pairs; B is already prepared. */
    const int blocks = (c->m + EK_ROW_BLOCK - 1) / EK_ROW_BLOCK;
    buf = scratch_get(&s, bmm_a_scratch(c));
    if (!buf) return;
    while ((u = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->batch * blocks) {
      const int b = u / blocks, r0 = (u % blocks) * EK_ROW_BLOCK;
      bmm_rows(c, b, r0, ek_min(r0 + EK_ROW_BLOCK, c->m), c->b_packed + (size_t)b * c->packed_stride,
               c->b_ct ? c->b_ct + (size_t)b * c->ct_stride : NULL, c->ones, buf);
    }
  } else {
    /* Units are whole batches: B of each is prepared right before its rows, while it is in cache. */
    size_t a_sz = align64(bmm_a_scratch(c)), b_sz = align64(bmm_b_scratch(c)), p_sz = align64(c->packed_stride);
    size_t ct_sz = align64(sizeof(float) * (size_t)c->ct_stride);
    uint8_t *packed;
    float *ct;
    buf = scratch_get(&s, a_sz + b_sz + p_sz + ct_sz);
    if (!buf) return;
    packed = buf + a_sz + b_sz;
    ct = (float *)(buf + a_sz + b_sz + p_sz);
    while ((u = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->batch) {
      const int ones = bmm_prepare_b(c, u, buf + a_sz, packed, c->out ? ct : NULL);
      bmm_rows(c, u, 0, c->m, packed, ct, ones, buf);
    }
  }
  if (s.heap) aligned_free(s.heap);
}

static void bmm_run(bmm_ctx *c, int threads) {
  int nt = ek_clamp_threads(threads);
  long long work = (long long)c->batch * c->m;
  if (work < 16ll * nt) nt = (int)((work + 15) / 16);
  if (nt < 1) nt = 1;
  c->kp = ek_round_up(c->k, c->ops->kpad);
  c->packed_stride = c->ops->packed_size(c->n, c->kp, c->bits);
  c->ct_stride = ek_round_up(c->n, 64);
  c->b_packed = NULL;
  c->b_ct = NULL;
  c->row_split = nt > 1 && c->batch < nt;
  c->next = 0;
  if (c->row_split) {
    /* Few large matrices: prepare every B here, then split the rows. */
    size_t tmp_sz = bmm_b_scratch(c);
    unsigned char *tmp = (unsigned char *)aligned_malloc(tmp_sz);
    int b;
    c->b_packed = (uint8_t *)aligned_malloc(align64(c->packed_stride) * (size_t)c->batch);
    c->b_ct = c->out ? (float *)aligned_malloc(sizeof(float) * (size_t)c->ct_stride * c->batch) : NULL;
    if (!tmp || !c->b_packed || (c->out && !c->b_ct)) {
      aligned_free(tmp);
      aligned_free(c->b_packed);
      aligned_free(c->b_ct);
      c->b_packed = NULL;
      c->b_ct = NULL;
      c->row_split = 0;
      nt = 1; /* fall back to the low-memory serial order */
    } else {
      c->packed_stride = align64(c->packed_stride);
      for (b = 0; b < c->batch; ++b)
        c->ones = bmm_prepare_b(c, b, tmp, c->b_packed + (size_t)b * c->packed_stride,
                      c->b_ct ? c->b_ct + (size_t)b * c->ct_stride : NULL);
      aligned_free(tmp);
    }
  }
  ek_parallel(nt, bmm_task, c);
  aligned_free(c->b_packed);
  aligned_free(c->b_ct);
}

static int dims_ok(int batch, int m, int k, int n) {
  return batch >= 1 && m >= 1 && k >= 1 && n >= 1 && (long long)m * k < (1ll << 31) &&
         (long long)n * k < (1ll << 31) && (long long)m * n < (1ll << 31);
}

void edgesr_qbmm(const float *a, const float *b, int batch, int m, int k, int n, int b_transposed, float a_lower,
                 float a_upper, float b_lower, float b_upper, int bits, float *out, int threads) {
  bmm_ctx c;
  double sb, lb, la;
  if (!a || !b || !out || !bits_ok(bits) || !dims_ok(batch, m, k, n)) return;
  memset(&c, 0, sizeof c);
  c.ops = active_ops();
  c.batch = batch;
  c.m = m;
  c.k = k;
  c.n = n;
  c.bits = bits;
  c.b_transposed = b_transposed != 0;
  c.a = a;
  c.b = b;
  c.out = out;
  c.aq = ek_make_qparams(a_lower, a_upper, bits);
  c.bq = ek_make_qparams(b_lower, b_upper, bits);
  sb = c.bq.step;
  lb = b_lower;
  la = a_lower;
  c.alpha = (float)((double)c.aq.step * sb);
  c.c_rx = (float)((double)c.aq.step * lb);
  c.c_cb = (float)(la * sb);
  c.c_k = (float)((double)k * la * lb);
  bmm_run(&c, threads);
}

void edgesr_qbmm_accumulate(const uint8_t *a_codes, const uint8_t *b_codes, int batch, int m, int k, int n,
                            int32_t *acc, int threads) {
  bmm_ctx c;
  size_t i, na, nb;
  unsigned mx = 0;
  if (!a_codes || !b_codes || !acc || !dims_ok(batch, m, k, n)) return;
  memset(&c, 0, sizeof c);
  c.ops = active_ops();
  c.batch = batch;
  c.m = m;
  c.k = k;
  c.n = n;
  c.b_transposed = 1;
  c.a_codes = a_codes;
  c.b_codes = b_codes;
  c.acc = acc;
  /* Codes carry no width here: take the narrowest that holds them, so the low-bit kernels run. */
  na = (size_t)batch * m * k;
  nb = (size_t)batch * n * k;
  for (i = 0; i < na; ++i) mx |= a_codes[i];
  for (i = 0; i < nb; ++i) mx |= b_codes[i];
  c.bits = 1;
  while (c.bits < 8 && (mx >> c.bits)) ++c.bits;
  bmm_run(&c, threads);
}
