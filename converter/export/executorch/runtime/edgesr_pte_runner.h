/* Running an edgesr .pte with ExecuTorch's C++ runtime, behind a small C API: what a phone app (the Android demo's
 * JNI glue) calls. The file is read into memory once; "forward" runs on one static LR tile (1 x C x H x W float32
 * in and out, NCHW); the model descriptor comes from the file's edgesr_metadata method (JSON). Link it with the
 * ExecuTorch runtime, its XNNPACK backend and edgesr_int4_backend.cpp (which registers EdgesrInt4Backend).
 *
 * Errors never abort: a NULL handle or a non-zero return, with a message in err (err_len bytes, may be 0). */
#ifndef EDGESR_PTE_RUNNER_H
#define EDGESR_PTE_RUNNER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct edgesr_pte edgesr_pte;

/* threads: for the edgesr kernels and XNNPACK's pool (process-wide; set before any method of any file is
 * loaded: resizing the pool under a loaded XNNPACK method invalidates it, so later opens with another count keep
 * the pool as it is). */
edgesr_pte *edgesr_pte_open(const char *path, int threads, char *err, size_t err_len);

/* The JSON model descriptor (scale, tile, window, QuantConfig, ...), owned by the handle. */
const char *edgesr_pte_metadata(const edgesr_pte *model);

/* forward's input and output shapes (4 dims each, NCHW). */
void edgesr_pte_shapes(const edgesr_pte *model, int in_shape[4], int out_shape[4]);

/* in: in_shape's element count, out: out_shape's; returns 0 on success. */
int edgesr_pte_run(edgesr_pte *model, const float *in, float *out, char *err, size_t err_len);

void edgesr_pte_close(edgesr_pte *model);

#ifdef __cplusplus
}
#endif

#endif /* EDGESR_PTE_RUNNER_H */
