package dev.edgesr.demo

import dev.edgesr.core.Json
import dev.edgesr.core.Layout
import dev.edgesr.core.TileModel
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.tensorflow.lite.Interpreter

/** A .pte (ExecuTorch: edgesr INT4 backend + XNNPACK) or else a .tflite (LiteRT + the edgesr delegate). */
fun openTileModel(file: File, threads: Int): TileModel =
    if (file.name.endsWith(".pte")) PteTileModel(file, threads) else LiteRtTileModel(file, threads)

/** An edgesr .tflite (NHWC). INT4 files get the edgesr delegate; FP32 files have nothing for it to claim. */
class LiteRtTileModel(model: File, threads: Int, override val window: Int = 8) : TileModel {
    private val delegate = EdgesrDelegate(threads)
    private val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(threads).addDelegate(delegate))
    override val tileH: Int
    override val tileW: Int
    override val scale: Int
    private val input: ByteBuffer
    private val output: ByteBuffer

    init {
        val inShape = interpreter.getInputTensor(0).shape()
        val outShape = interpreter.getOutputTensor(0).shape()
        tileH = inShape[1]
        tileW = inShape[2]
        scale = outShape[1] / tileH
        input = ByteBuffer.allocateDirect(4 * tileH * tileW * 3).order(ByteOrder.nativeOrder())
        output = ByteBuffer.allocateDirect(4 * tileH * tileW * 3 * scale * scale).order(ByteOrder.nativeOrder())
    }

    override fun run(tile: FloatArray): FloatArray {
        input.rewind()
        input.asFloatBuffer().put(tile)
        output.rewind()
        interpreter.run(input, output)
        val out = FloatArray(output.capacity() / 4)
        output.rewind()
        output.asFloatBuffer().get(out)
        return out
    }

    override fun close() {
        interpreter.close()
        delegate.close()
    }
}

/**
 * An edgesr .pte (NCHW) through the app's native ExecuTorch runner (NativeLib.pte*): the tile and scale from the
 * forward method's shapes, the window from the file's edgesr_metadata descriptor.
 */
class PteTileModel(model: File, threads: Int) : TileModel {
    private var handle: Long = NativeLib.pteOpen(model.path, threads)
    override val tileH: Int
    override val tileW: Int
    override val scale: Int
    override val window: Int

    init {
        val shapes = NativeLib.pteShapes(handle) // N, C, H, W of the input, then of the output
        check(shapes[1] == 3 && shapes[5] == 3) { "${model.name}: expected RGB in and out, got ${shapes.toList()}" }
        tileH = shapes[2]
        tileW = shapes[3]
        scale = shapes[6] / tileH
        val meta = Json.parse(NativeLib.pteMetadata(handle)) as? Map<*, *>
        window = (meta?.get("window_size") as? Number)?.toInt() ?: 8
    }

    override fun run(tile: FloatArray): FloatArray {
        val out = FloatArray(3 * tileH * tileW * scale * scale)
        NativeLib.pteRun(handle, Layout.hwcToChw(tile, tileH, tileW), out)
        return Layout.chwToHwc(out, tileH * scale, tileW * scale)
    }

    override fun close() {
        if (handle != 0L) {
            NativeLib.pteClose(handle)
            handle = 0L
        }
    }
}
