package dev.edgesr.demo

import org.tensorflow.lite.Delegate

/**
 * The app's native library (src/main/cpp): kernel paths of this phone, the edgesr LiteRT delegate, and .pte files
 * through ExecuTorch's runtime (converter/export/executorch/runtime/edgesr_pte_runner.h); the pte calls throw
 * IllegalStateException with the runner's message (bad file, or a build without ExecuTorch).
 */
object NativeLib {
    init {
        System.loadLibrary("edgesr_demo")
    }

    /** "active=<path> available=<paths>", e.g. "active=neon_i8mm available=neon,neon_dotprod,neon_i8mm". */
    @JvmStatic external fun kernelPaths(): String

    @JvmStatic external fun createDelegate(threads: Int): Long

    @JvmStatic external fun destroyDelegate(handle: Long)

    @JvmStatic external fun pteOpen(path: String, threads: Int): Long

    @JvmStatic external fun pteMetadata(handle: Long): String

    /** N, C, H, W of forward's input, then of its output. */
    @JvmStatic external fun pteShapes(handle: Long): IntArray

    /** input, output: NCHW floats of exactly those shapes. */
    @JvmStatic external fun pteRun(handle: Long, input: FloatArray, output: FloatArray)

    @JvmStatic external fun pteClose(handle: Long)
}

/**
 * The edgesr delegate for LiteRT's Java Interpreter: `Interpreter.Options().addDelegate(EdgesrDelegate(threads))`
 * lets an edgesr INT4 .tflite run its EDGESR_SWIN_BLOCK ops with the native kernels; XNNPACK takes the rest.
 */
class EdgesrDelegate(threads: Int) : Delegate, AutoCloseable {
    private var handle: Long = NativeLib.createDelegate(threads)

    init {
        check(handle != 0L) { "the edgesr delegate could not be created" }
    }

    override fun getNativeHandle(): Long = handle

    override fun close() {
        if (handle != 0L) {
            NativeLib.destroyDelegate(handle)
            handle = 0L
        }
    }
}
