/* JNI glue of the demo app (class dev.edgesr.demo.NativeLib): the device's kernel paths, and the edgesr LiteRT
 * delegate as a native handle for LiteRT's Java API (org.tensorflow.lite.Delegate#getNativeHandle), so the app's
 * Interpreter runs EDGESR_SWIN_BLOCK ops with the shared kernels. Built by CMakeLists.txt next to this file from
 * the repository's native/ and converter/export/tflite/runtime/ sources (no copies). */
#include <jni.h>
#include <stdio.h>
#include <string.h>

#include "edgesr_kernels.h"

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
