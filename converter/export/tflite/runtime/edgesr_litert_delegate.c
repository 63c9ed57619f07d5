/* edgesr LiteRT delegate: runs the CUSTOM ops of an edgesr INT4 .tflite (EDGESR_SWIN_BLOCK, and for blocks a
 * QuantConfig quantizes only in part EDGESR_QLINEAR / EDGESR_QBMM) with the shared native kernels (native/). Loaded as an external delegate (tflite_plugin_create_delegate), e.g. from Python with
 * ai_edge_litert.interpreter.load_delegate(path, {"threads": "2"}); no TensorFlow headers are needed.
 *
 * The structs below are the leading fields of LiteRT's C ABI (tflite/core/c/common.h), which only ever grows at
 * the end. TfLiteRegistration is passed by value, so ours carries spare zeroed fields past the known ones.
 *
 * The interpreter groups claimed nodes into partitions (e.g. the 6 consecutive blocks of a residual group); a
 * partition's input and output tensors belong to the interpreter, the tensors between its ops to the delegate. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgesr_kernels.h"

#define EXPORT __attribute__((visibility("default")))

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
enum { kTfLiteFloat32 = 1, kTfLiteBuiltinCustom = 32, kTfLiteDelegateFlagsAllowDynamicTensors = 1 };

typedef struct {
  int size;
  int data[];
} TfLiteIntArray;

typedef struct {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

typedef struct {
  int type;
  void *params;
} TfLiteQuantization;

typedef struct TfLiteTensor {
  int type;
  union {
    float *f;
    void *raw;
  } data;
  TfLiteIntArray *dims;
  TfLiteQuantizationParams params;
  int allocation_type;
  size_t bytes;
  const void *allocation;
  const char *name;
  void *delegate;
  int buffer_handle;
  _Bool data_is_stale;
  _Bool is_variable;
  TfLiteQuantization quantization;
  void *sparsity;
  const TfLiteIntArray *dims_signature;
} TfLiteTensor; /* 112 bytes on LP64 */

typedef struct TfLiteNode {
  TfLiteIntArray *inputs;
  TfLiteIntArray *outputs;
  TfLiteIntArray *intermediates;
  TfLiteIntArray *temporaries;
  void *user_data;
  void *builtin_data;
  const void *custom_initial_data;
  int custom_initial_data_size;
} TfLiteNode;

struct TfLiteContext;
struct TfLiteDelegate;

typedef struct TfLiteRegistration {
  void *(*init)(struct TfLiteContext *context, const char *buffer, size_t length);
  void (*free)(struct TfLiteContext *context, void *buffer);
  TfLiteStatus (*prepare)(struct TfLiteContext *context, TfLiteNode *node);
  TfLiteStatus (*invoke)(struct TfLiteContext *context, TfLiteNode *node);
  const char *(*profiling_string)(const struct TfLiteContext *context, const TfLiteNode *node);
  int32_t builtin_code;
  const char *custom_name;
  int version;
  void *registration_external;
  void *async_kernel;
  uint64_t inplace_operator;
  uint64_t spare[8]; /* zero: room for fields a newer runtime may read */
} TfLiteRegistration;

typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext *context, TfLiteIntArray **execution_plan);
  TfLiteTensor *tensors;
  void *impl_;
  TfLiteStatus (*ResizeTensor)(struct TfLiteContext *, TfLiteTensor *tensor, TfLiteIntArray *new_size);
  void (*ReportError)(struct TfLiteContext *, const char *msg, ...);
  TfLiteStatus (*AddTensors)(struct TfLiteContext *, int tensors_to_add, int *first_new_tensor_index);
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext *, int node_index, TfLiteNode **node,
                                         TfLiteRegistration **registration);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext *, TfLiteRegistration registration,
                                                        const TfLiteIntArray *nodes_to_replace,
                                                        struct TfLiteDelegate *delegate);
} TfLiteContext;

typedef struct TfLiteDelegate {
  void *data_;
  TfLiteStatus (*Prepare)(TfLiteContext *context, struct TfLiteDelegate *delegate);
  void *CopyFromBufferHandle;
  void *CopyToBufferHandle;
  void *FreeBufferHandle;
  int64_t flags;
  void *opaque_delegate_builder;
  void *spare[8];
} TfLiteDelegate;

typedef struct {
  TfLiteDelegate *delegate;
  TfLiteIntArray *nodes_to_replace;
  TfLiteIntArray *input_tensors;
  TfLiteIntArray *output_tensors;
} TfLiteDelegateParams;

/* The custom ops this delegate runs; each carries its delegate blob (converter/export/blob.py) as options. */
enum { NODE_BLOCK, NODE_LINEAR, NODE_BMM, NODE_KINDS };
static const char *const kOpNames[NODE_KINDS] = {"EDGESR_SWIN_BLOCK", "EDGESR_QLINEAR", "EDGESR_QBMM"};

typedef struct {
  int threads;
} delegate_state;

typedef struct {
  int kind, n_in, in[2], out;
  edgesr_swin_block *block;
  edgesr_qlinear *linear;
  int bits, b_transposed, batch, m, k, n;
  float bounds[4];
} op_node;

typedef struct {
  int tensor;
  float *data;
} own_buffer;

/* One delegated partition: its ops in execution order. Tensors produced and consumed inside it are not
 * allocated by the interpreter, so the partition owns them. */
typedef struct {
  int count, threads, n_own;
  op_node *nodes;
  own_buffer *own;
  float *workspace; /* shared by the partition's Swin blocks, which run one after another */
} partition;

static void partition_free(partition *p) {
  if (!p) return;
  for (int i = 0; i < p->count; ++i) {
    if (p->nodes[i].block) edgesr_swin_block_destroy(p->nodes[i].block);
    if (p->nodes[i].linear) edgesr_qlinear_destroy(p->nodes[i].linear);
  }
  for (int i = 0; i < p->n_own; ++i) free(p->own[i].data);
  free(p->own);
  free(p->nodes);
  free(p->workspace);
  free(p);
}

static int op_kind(const TfLiteRegistration *reg) {
  if (reg->builtin_code != kTfLiteBuiltinCustom || !reg->custom_name) return -1;
  for (int i = 0; i < NODE_KINDS; ++i)
    if (!strcmp(reg->custom_name, kOpNames[i])) return i;
  return -1;
}

static size_t elements(const TfLiteTensor *t) {
  size_t n = 1;
  for (int i = 0; t->dims && i < t->dims->size; ++i) n *= (size_t)t->dims->data[i];
  return n;
}

static int dim(const TfLiteTensor *t, int from_end) {
  return t->dims && t->dims->size >= from_end ? t->dims->data[t->dims->size - from_end] : 0;
}

static int in_array(const TfLiteIntArray *a, int v) {
  for (int i = 0; i < a->size; ++i)
    if (a->data[i] == v) return 1;
  return 0;
}

static float *tensor_data(const partition *p, TfLiteContext *context, int idx) {
  for (int i = 0; i < p->n_own; ++i)
    if (p->own[i].tensor == idx) return p->own[i].data;
  return context->tensors[idx].data.f;
}

/* Builds node i from its blob and checks its tensors' shapes; 0, or -1 with the error reported. */
static int node_init(TfLiteContext *context, op_node *op, int kind, const TfLiteNode *node) {
  const TfLiteTensor *t = context->tensors;
  const size_t size = (size_t)node->custom_initial_data_size;
  const int want_inputs = kind == NODE_BMM ? 2 : 1;
  op->kind = kind;
  if (node->inputs->size != want_inputs || node->outputs->size != 1) return -1;
  op->n_in = want_inputs;
  for (int j = 0; j < want_inputs; ++j) op->in[j] = node->inputs->data[j];
  op->out = node->outputs->data[0];
  const TfLiteTensor *x = &t[op->in[0]], *y = &t[op->out];
  for (int j = 0; j < want_inputs; ++j)
    if (t[op->in[j]].type != kTfLiteFloat32) return -1;
  if (y->type != kTfLiteFloat32) return -1;
  if (kind == NODE_BLOCK) {
    op->block = edgesr_swin_block_from_blob(node->custom_initial_data, size);
    int tokens = 0, channels = 0;
    edgesr_swin_block_shape(op->block, &tokens, &channels);
    const size_t count = (size_t)tokens * (size_t)channels;
    return op->block && elements(x) == count && elements(y) == count ? 0 : -1;
  }
  if (kind == NODE_LINEAR) {
    op->linear = edgesr_qlinear_from_blob(node->custom_initial_data, size);
    if (!op->linear) return -1;
    edgesr_qlinear_shape(op->linear, &op->n, &op->k);
    op->m = (int)(elements(x) / (size_t)op->k);
    return dim(x, 1) == op->k && elements(y) == (size_t)op->m * (size_t)op->n ? 0 : -1;
  }
  if (edgesr_qbmm_from_blob(node->custom_initial_data, size, &op->bits, &op->b_transposed, op->bounds) != 0) return -1;
  const TfLiteTensor *b = &t[op->in[1]];
  op->m = dim(x, 2);
  op->k = dim(x, 1);
  op->n = op->b_transposed ? dim(b, 2) : dim(b, 1);
  const int bk = op->b_transposed ? dim(b, 1) : dim(b, 2);
  if (op->m < 1 || op->k < 1 || op->n < 1 || bk != op->k) return -1;
  op->batch = (int)(elements(x) / ((size_t)op->m * (size_t)op->k));
  return elements(b) == (size_t)op->batch * op->k * op->n && elements(y) == (size_t)op->batch * op->m * op->n ? 0 : -1;
}

static void *kernel_init(TfLiteContext *context, const char *buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams *params = (const TfLiteDelegateParams *)buffer;
  const delegate_state *state = (const delegate_state *)params->delegate->data_;
  const int count = params->nodes_to_replace->size;
  partition *p = (partition *)calloc(1, sizeof(partition));
  if (!p) return NULL;
  p->threads = state->threads;
  p->nodes = (op_node *)calloc((size_t)count, sizeof(op_node));
  p->own = (own_buffer *)calloc((size_t)count, sizeof(own_buffer));
  if (!p->nodes || !p->own) goto fail;
  p->count = count;
  size_t workspace = 0;
  for (int i = 0; i < count; ++i) {
    TfLiteNode *node = NULL;
    TfLiteRegistration *reg = NULL;
    if (context->GetNodeAndRegistration(context, params->nodes_to_replace->data[i], &node, &reg) != kTfLiteOk) goto fail;
    const int kind = op_kind(reg);
    if (kind < 0 || node_init(context, &p->nodes[i], kind, node) != 0) {
      context->ReportError(context, "edgesr delegate: invalid %s node (options blob or tensor shapes)",
                           kind < 0 ? "custom" : kOpNames[kind]);
      goto fail;
    }
    if (p->nodes[i].block) {
      const size_t need = edgesr_swin_block_workspace_floats(p->nodes[i].block);
      if (need > workspace) workspace = need;
    }
    const int out = p->nodes[i].out;
    if (!in_array(params->output_tensors, out)) { /* consumed only inside the partition */
      p->own[p->n_own].tensor = out;
      p->own[p->n_own].data = (float *)malloc(sizeof(float) * elements(&context->tensors[out]));
      if (!p->own[p->n_own++].data) goto fail;
    }
  }
  if (workspace && !(p->workspace = (float *)malloc(sizeof(float) * workspace))) goto fail;
  return p;
fail:
  partition_free(p);
  return NULL;
}

static void kernel_free(TfLiteContext *context, void *buffer) {
  (void)context;
  partition_free((partition *)buffer);
}

static TfLiteStatus kernel_prepare(TfLiteContext *context, TfLiteNode *node) {
  (void)context;
  return node->user_data ? kTfLiteOk : kTfLiteError;
}

static TfLiteStatus kernel_invoke(TfLiteContext *context, TfLiteNode *node) {
  const partition *p = (const partition *)node->user_data;
  for (int i = 0; i < p->count; ++i) {
    const op_node *op = &p->nodes[i];
    const float *x = tensor_data(p, context, op->in[0]);
    float *y = tensor_data(p, context, op->out);
    if (op->kind == NODE_BLOCK) {
      if (edgesr_swin_block_run(op->block, x, y, p->workspace, p->threads) != 0) {
        context->ReportError(context, "edgesr delegate: edgesr_swin_block_run failed");
        return kTfLiteError;
      }
    } else if (op->kind == NODE_LINEAR) {
      edgesr_qlinear_run(op->linear, x, op->m, y, p->threads);
    } else {
      edgesr_qbmm(x, tensor_data(p, context, op->in[1]), op->batch, op->m, op->k, op->n, op->b_transposed,
                  op->bounds[0], op->bounds[1], op->bounds[2], op->bounds[3], op->bits, y, p->threads);
    }
  }
  return kTfLiteOk;
}

static TfLiteStatus delegate_prepare(TfLiteContext *context, TfLiteDelegate *delegate) {
  TfLiteIntArray *plan = NULL;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk) return kTfLiteError;
  TfLiteIntArray *claim = (TfLiteIntArray *)malloc(sizeof(int) * (1 + (size_t)plan->size));
  if (!claim) return kTfLiteError;
  claim->size = 0;
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode *node = NULL;
    TfLiteRegistration *reg = NULL;
    if (context->GetNodeAndRegistration(context, plan->data[i], &node, &reg) == kTfLiteOk && op_kind(reg) >= 0)
      claim->data[claim->size++] = plan->data[i];
  }
  TfLiteStatus status = kTfLiteOk;
  if (claim->size) {
    TfLiteRegistration kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.init = kernel_init;
    kernel.free = kernel_free;
    kernel.prepare = kernel_prepare;
    kernel.invoke = kernel_invoke;
    kernel.builtin_code = kTfLiteBuiltinCustom;
    kernel.custom_name = "EdgesrInt4Delegate";
    kernel.version = 1;
    status = context->ReplaceNodeSubsetsWithDelegateKernels(context, kernel, claim, delegate);
  }
  free(claim);
  return status;
}

EXPORT TfLiteDelegate *tflite_plugin_create_delegate(char **keys, char **values, size_t count,
                                                     void (*report_error)(const char *)) {
  delegate_state *state = (delegate_state *)calloc(1, sizeof(delegate_state));
  TfLiteDelegate *d = (TfLiteDelegate *)calloc(1, sizeof(TfLiteDelegate));
  if (!state || !d) {
    free(state);
    free(d);
    return NULL;
  }
  state->threads = 1;
  for (size_t i = 0; i < count; ++i) {
    if (!strcmp(keys[i], "threads")) {
      state->threads = atoi(values[i]);
      if (state->threads < 1) state->threads = 1;
    } else if (report_error) {
      char msg[160];
      snprintf(msg, sizeof msg, "edgesr delegate: unknown option '%.100s' (known: threads)", keys[i]);
      report_error(msg);
      free(state);
      free(d);
      return NULL;
    }
  }
  d->data_ = state;
  d->Prepare = delegate_prepare;
  d->flags = kTfLiteDelegateFlagsAllowDynamicTensors; /* else the graph is prepared before we claim our ops */
  return d;
}

EXPORT void tflite_plugin_destroy_delegate(TfLiteDelegate *delegate) {
  if (!delegate) return;
  free(delegate->data_);
  free(delegate);
}
