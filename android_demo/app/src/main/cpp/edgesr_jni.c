/* JNI glue of the demo app (class dev.edgesr.demo.NativeLib): the device's kernel paths; the edgesr LiteRT
 * delegate as a native handle for LiteRT's Java API (org.tensorflow.lite.Delegate#getNativeHandle), so the app's
 * Interpreter runs EDGESR_SWIN_BLOCK ops with the shared kernels; and, when built with EDGESR_DEMO_PTE, .pte files
 * through ExecuTorch's runtime (converter/export/executorch/runtime/edgesr_pte_runner.h) with the edgesr and
 * XNNPACK backends. Built by CMakeLists.txt next to this file from the repository's sources (no copies). */
#include <jni.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "edgesr_kernels.h"
#ifdef EDGESR_DEMO_PTE
#include "edgesr_pte_runner.h"
#endif

/* From edgesr_litert_delegate.c (LiteRT's external-delegate entry points). */
struct TfLiteDelegate;
struct TfLiteDelegate *tflite_plugin_create_delegate(char **keys, char **values, size_t count,
                                                     void (*report_error)(const char *));
void tflite_plugin_destroy_delegate(struct TfLiteDelegate *delegate);

/* "active=neon_dotprod available=neon,neon_dotprod" */
JNIEXPORT jstring JNICALL Java_dev_edgesr_demo_NativeLib_kernelPaths(JNIEnv *env, jclass cls) {
  (void)cls;
  char buf[256];
  int n = snprintf(buf, sizeof buf, "active=%s available=", edgesr_isa_name(edgesr_active_isa()));
  int first = 1;
  for (int isa = 0; isa < 8 && n > 0 && (size_t)n < sizeof buf; ++isa) {
    const char *name = edgesr_isa_name(isa);
    if (name && edgesr_isa_available(isa)) {
      n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%s", first ? "" : ",", name);
      first = 0;
    }
  }
  return (*env)->NewStringUTF(env, buf);
}

JNIEXPORT jlong JNICALL Java_dev_edgesr_demo_NativeLib_createDelegate(JNIEnv *env, jclass cls, jint threads) {
  (void)env;
  (void)cls;
  char value[16];
  snprintf(value, sizeof value, "%d", threads > 0 ? (int)threads : 1);
  char *keys[] = {"threads"}, *values[] = {value};
  return (jlong)(intptr_t)tflite_plugin_create_delegate(keys, values, 1, NULL);
}

JNIEXPORT void JNICALL Java_dev_edgesr_demo_NativeLib_destroyDelegate(JNIEnv *env, jclass cls, jlong handle) {
  (void)env;
  (void)cls;
  tflite_plugin_destroy_delegate((struct TfLiteDelegate *)(intptr_t)handle);
}

/* ---- .pte files (class dev.edgesr.demo.PteTileModel) ---------------------------------------------------------- */

static void throw_error(JNIEnv *env, const char *message) {
  jclass cls = (*env)->FindClass(env, "java/lang/IllegalStateException");
  if (cls) (*env)->ThrowNew(env, cls, message);
}

#ifdef EDGESR_DEMO_PTE
JNIEXPORT jlong JNICALL Java_dev_edgesr_demo_NativeLib_pteOpen(JNIEnv *env, jclass cls, jstring path, jint threads) {
  (void)cls;
  char err[512] = "";
  const char *p = (*env)->GetStringUTFChars(env, path, NULL);
  if (!p) return 0; /* OutOfMemoryError pending */
  edgesr_pte *model = edgesr_pte_open(p, threads, err, sizeof err);
  (*env)->ReleaseStringUTFChars(env, path, p);
  if (!model) throw_error(env, err);
  return (jlong)(intptr_t)model;
}

JNIEXPORT jstring JNICALL Java_dev_edgesr_demo_NativeLib_pteMetadata(JNIEnv *env, jclass cls, jlong handle) {
  (void)cls;
  return (*env)->NewStringUTF(env, edgesr_pte_metadata((const edgesr_pte *)(intptr_t)handle));
}

/* {N, C, H, W} of the input, then of the output. */
JNIEXPORT jintArray JNICALL Java_dev_edgesr_demo_NativeLib_pteShapes(JNIEnv *env, jclass cls, jlong handle) {
  (void)cls;
  jint dims[8];
  int in[4], out[4];
  edgesr_pte_shapes((const edgesr_pte *)(intptr_t)handle, in, out);
  for (int i = 0; i < 4; ++i) {
    dims[i] = in[i];
    dims[4 + i] = out[i];
  }
  jintArray result = (*env)->NewIntArray(env, 8);
  if (result) (*env)->SetIntArrayRegion(env, result, 0, 8, dims);
  return result;
}

JNIEXPORT void JNICALL Java_dev_edgesr_demo_NativeLib_pteRun(JNIEnv *env, jclass cls, jlong handle, jfloatArray input,
                                                             jfloatArray output) {
  (void)cls;
  char err[512] = "";
  edgesr_pte *model = (edgesr_pte *)(intptr_t)handle;
  int in[4], out[4];
  edgesr_pte_shapes(model, in, out);
  if ((*env)->GetArrayLength(env, input) != in[0] * in[1] * in[2] * in[3] ||
      (*env)->GetArrayLength(env, output) != out[0] * out[1] * out[2] * out[3]) {
    throw_error(env, "pteRun: array sizes do not match the model's input and output");
    return;
  }
  jfloat *x = (*env)->GetFloatArrayElements(env, input, NULL);
  jfloat *y = (*env)->GetFloatArrayElements(env, output, NULL);
  int rc = x && y ? edgesr_pte_run(model, x, y, err, sizeof err) : 1;
  if (y) (*env)->ReleaseFloatArrayElements(env, output, y, rc == 0 ? 0 : JNI_ABORT);
  if (x) (*env)->ReleaseFloatArrayElements(env, input, x, JNI_ABORT);
  if (rc != 0) throw_error(env, err[0] ? err : "pteRun: out of memory");
}

JNIEXPORT void JNICALL Java_dev_edgesr_demo_NativeLib_pteClose(JNIEnv *env, jclass cls, jlong handle) {
  (void)env;
  (void)cls;
  edgesr_pte_close((edgesr_pte *)(intptr_t)handle);
}
#else
/* Built without ExecuTorch (EDGESR_DEMO_PTE=OFF): .pte files are refused with a clear message. */
JNIEXPORT jlong JNICALL Java_dev_edgesr_demo_NativeLib_pteOpen(JNIEnv *env, jclass cls, jstring path, jint threads) {
  (void)cls;
  (void)path;
  (void)threads;
  throw_error(env, "this build of the app has no ExecuTorch runtime (CMake option EDGESR_DEMO_PTE=OFF): use .tflite");
  return 0;
}
#endif
