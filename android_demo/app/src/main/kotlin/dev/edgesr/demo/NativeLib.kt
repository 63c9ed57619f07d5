package dev.edgesr.demo

import org.tensorflow.lite.Delegate

/** The app's native library (src/main/cpp): kernel paths of this phone and the edgesr LiteRT delegate. */
object NativeLib {
    init {
        System.loadLibrary("edgesr_demo")
    }

    /** "active=<path> available=<paths>", e.g. "active=neon_i8mm available=neon,neon_dotprod,neon_i8mm". */
    @JvmStatic external fun kernelPaths(): String

    @JvmStatic external fun createDelegate(threads: Int): Long

    @JvmStatic external fun destroyDelegate(handle: Long)
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
