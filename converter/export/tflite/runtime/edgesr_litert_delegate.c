/* edgesr LiteRT delegate: runs the CUSTOM "EDGESR_SWIN_BLOCK" ops of an edgesr INT4 .tflite with the shared
 * native kernels (native/). Loaded as an external delegate (tflite_plugin_create_delegate), e.g. from Python with
 * ai_edge_litert.interpreter.load_delegate(path, {"threads": "2"}); no TensorFlow headers are needed.
 *
 * The structs below are the leading fields of LiteRT's C ABI (tflite/core/c/common.h), which only ever grows at
 * the end. TfLiteRegistration is passed by value, so ours carries spare zeroed fields past the known ones.
 *
 * Each delegated partition is a chain of consecutive blocks (the graph's 6 blocks of a residual group): the
 * partition's input and output tensors belong to the interpreter; the tensors between blocks are not allocated
 * by it, so the kernel ping-pongs between two buffers of its own. */
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

static const char kSwinBlockOp[] = "EDGESR_SWIN_BLOCK";

typedef struct {
  int threads;
  int claimed; /* nodes this delegate took, for tests and reports */
} delegate_state;

/* One partition: a chain of blocks, input tensor -> block 0 -> ... -> block n-1 -> output tensor. */
typedef struct {
  int count, input, output, threads;
  edgesr_swin_block **blocks;
  float *ping, *pong, *workspace;
  size_t elements;
} partition;

static void partition_free(partition *p) {
  if (!p) return;
  for (int i = 0; i < p->count; ++i)
    if (p->blocks[i]) edgesr_swin_block_destroy(p->blocks[i]);
  free(p->blocks);
  free(p->ping);
  free(p->pong);
  free(p->workspace);
  free(p);
}

static int is_swin_block(const TfLiteRegistration *reg) {
  return reg->builtin_code == kTfLiteBuiltinCustom && reg->custom_name && !strcmp(reg->custom_name, kSwinBlockOp);
}

static size_t tensor_elements(const TfLiteTensor *t) {
  size_t n = 1;
  for (int i = 0; t->dims && i < t->dims->size; ++i) n *= (size_t)t->dims->data[i];
  return n;
}

static void *kernel_init(TfLiteContext *context, const char *buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams *params = (const TfLiteDelegateParams *)buffer;
  const delegate_state *state = (const delegate_state *)params->delegate->data_;
  const int count = params->nodes_to_replace->size;
  partition *p = (partition *)calloc(1, sizeof(partition));
  if (!p) return NULL;
  p->threads = state->threads;
  p->blocks = (edgesr_swin_block **)calloc((size_t)count, sizeof(edgesr_swin_block *));
  if (!p->blocks) goto fail;
  p->count = count;
  if (params->input_tensors->size != 1 || params->output_tensors->size != 1) {
    context->ReportError(context, "edgesr delegate: a partition must have one input and one output tensor");
    goto fail;
  }
  p->input = params->input_tensors->data[0];
  p->output = params->output_tensors->data[0];
  size_t workspace = 0;
  int previous_out = p->input;
  for (int i = 0; i < count; ++i) {
    TfLiteNode *node = NULL;
    TfLiteRegistration *reg = NULL;
    if (context->GetNodeAndRegistration(context, params->nodes_to_replace->data[i], &node, &reg) != kTfLiteOk) goto fail;
    if (node->inputs->size != 1 || node->outputs->size != 1 || node->inputs->data[0] != previous_out) {
      context->ReportError(context, "edgesr delegate: EDGESR_SWIN_BLOCK nodes must form a chain");
      goto fail;
    }
    previous_out = node->outputs->data[0];
    p->blocks[i] = edgesr_swin_block_from_blob(node->custom_initial_data, (size_t)node->custom_initial_data_size);
    if (!p->blocks[i]) {
      context->ReportError(context, "edgesr delegate: invalid EDGESR_SWIN_BLOCK options (blob)");
      goto fail;
    }
    int tokens = 0, dim = 0;
    edgesr_swin_block_shape(p->blocks[i], &tokens, &dim);
    if (i == 0) p->elements = (size_t)tokens * (size_t)dim;
    if ((size_t)tokens * (size_t)dim != p->elements) {
      context->ReportError(context, "edgesr delegate: blocks of one chain disagree on their token grid");
      goto fail;
    }
    const size_t need = edgesr_swin_block_workspace_floats(p->blocks[i]);
    if (need > workspace) workspace = need;
  }
  if (previous_out != p->output) goto fail;
  p->workspace = (float *)malloc(sizeof(float) * workspace);
  p->ping = (float *)malloc(sizeof(float) * p->elements);
  p->pong = (float *)malloc(sizeof(float) * p->elements);
  if (!p->workspace || !p->ping || !p->pong) goto fail;
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
  const partition *p = (const partition *)node->user_data;
  if (!p) return kTfLiteError;
  const TfLiteTensor *in = &context->tensors[p->input], *out = &context->tensors[p->output];
  if (in->type != kTfLiteFloat32 || out->type != kTfLiteFloat32 || tensor_elements(in) != p->elements ||
      tensor_elements(out) != p->elements) {
    context->ReportError(context, "edgesr delegate: EDGESR_SWIN_BLOCK tensors must be float32 of %zu elements",
                         p->elements);
    return kTfLiteError;
  }
  return kTfLiteOk;
}

static TfLiteStatus kernel_invoke(TfLiteContext *context, TfLiteNode *node) {
  const partition *p = (const partition *)node->user_data;
  const float *src = context->tensors[p->input].data.f;
  float *final_out = context->tensors[p->output].data.f;
  for (int i = 0; i < p->count; ++i) {
    float *dst = i == p->count - 1 ? final_out : (i % 2 ? p->pong : p->ping);
    if (edgesr_swin_block_run(p->blocks[i], src, dst, p->workspace, p->threads) != 0) {
      context->ReportError(context, "edgesr delegate: edgesr_swin_block_run failed");
      return kTfLiteError;
    }
    src = dst;
  }
  return kTfLiteOk;
}

static TfLiteStatus delegate_prepare(TfLiteContext *context, TfLiteDelegate *delegate) {
  delegate_state *state = (delegate_state *)delegate->data_;
  TfLiteIntArray *plan = NULL;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk) return kTfLiteError;
  TfLiteIntArray *claim = (TfLiteIntArray *)malloc(sizeof(int) * (1 + (size_t)plan->size));
  if (!claim) return kTfLiteError;
  claim->size = 0;
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode *node = NULL;
    TfLiteRegistration *reg = NULL;
    if (context->GetNodeAndRegistration(context, plan->data[i], &node, &reg) == kTfLiteOk && is_swin_block(reg))
      claim->data[claim->size++] = plan->data[i];
  }
  TfLiteStatus status = kTfLiteOk;
  state->claimed = claim->size;
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

/* Nodes the most recent Prepare of this delegate claimed. */
EXPORT int edgesr_litert_delegate_claimed(const TfLiteDelegate *delegate) {
  return delegate ? ((const delegate_state *)delegate->data_)->claimed : -1;
}
