package dev.edgesr.demo

import dev.edgesr.core.AxisPlan
import dev.edgesr.core.mirrorSource
import java.io.File
import org.tensorflow.lite.Interpreter

/**
 * An edgesr .tflite (NHWC, one static LR tile) run over a whole RGB image with the tile plan of runtime/TILING.md,
 * as edgesr's desktop runtime does: mirror padding to the window multiple, feathered blend in float32, clip and
 * floor(v * 255 + 0.5). INT4 files get the edgesr delegate (FP32 files have nothing for it to claim).
 */
class TiledUpscaler(model: File, val threads: Int, private val window: Int = 8) : AutoCloseable {
    private val delegate = EdgesrDelegate(threads)
    private val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(threads).addDelegate(delegate))
    val tileH: Int
    val tileW: Int
    val scale: Int
    var tileMillis = mutableListOf<Double>()
        private set

    init {
        val inShape = interpreter.getInputTensor(0).shape()
        val outShape = interpreter.getOutputTensor(0).shape()
        tileH = inShape[1]
        tileW = inShape[2]
        scale = outShape[1] / tileH
    }

    /** (h x w) packed ARGB pixels -> (h*s x w*s) packed ARGB pixels. */
    fun upscale(pixels: IntArray, h0: Int, w0: Int, overlap: Int = 16): IntArray {
        val h1 = h0 + (window - h0 % window) % window
        val w1 = w0 + (window - w0 % window) % window
        val rows = AxisPlan.plan(h1, tileH, minOf(overlap, tileH - 1))
        val cols = AxisPlan.plan(w1, tileW, minOf(overlap, tileW - 1))
        val wr = rows.weights(scale)
        val wc = cols.weights(scale)
        val oh = h1 * scale
        val ow = w1 * scale
        val acc = FloatArray(oh * ow * 3)
        val input = Array(1) { Array(tileH) { Array(tileW) { FloatArray(3) } } }
        val output = Array(1) { Array(tileH * scale) { Array(tileW * scale) { FloatArray(3) } } }
        tileMillis = mutableListOf()
        for ((i, r0) in rows.starts.withIndex()) for ((j, c0) in cols.starts.withIndex()) {
            for (y in 0 until tileH) {
                val sy = mirrorSource(mirrorSource(r0 + y, h1, h1 + rows.pad), h0, h1)
                for (x in 0 until tileW) {
                    val sx = mirrorSource(mirrorSource(c0 + x, w1, w1 + cols.pad), w0, w1)
                    val p = pixels[sy * w0 + sx]
                    input[0][y][x][0] = ((p shr 16) and 0xFF) / 255f
                    input[0][y][x][1] = ((p shr 8) and 0xFF) / 255f
                    input[0][y][x][2] = (p and 0xFF) / 255f
                }
            }
            val t0 = System.nanoTime()
            interpreter.run(input, output)
            tileMillis.add((System.nanoTime() - t0) / 1e6)
            val oy = r0 * scale
            val ox = c0 * scale
            for (y in 0 until minOf(tileH * scale, oh - oy)) for (x in 0 until minOf(tileW * scale, ow - ox)) {
                val weight = (wr[i][oy + y] * wc[j][ox + x]).toFloat()
                for (k in 0 until 3) acc[((oy + y) * ow + ox + x) * 3 + k] += output[0][y][x][k] * weight
            }
        }
        val fh = h0 * scale
        val fw = w0 * scale
        return IntArray(fh * fw) { idx ->
            val y = idx / fw
            val x = idx % fw
            var argb = 0xFF shl 24
            for (k in 0 until 3) {
                val v = acc[(y * ow + x) * 3 + k].coerceIn(0f, 1f)
                argb = argb or (kotlin.math.floor(v * 255f + 0.5f).toInt() shl (16 - 8 * k))
            }
            argb
        }
    }

    override fun close() {
        interpreter.close()
        delegate.close()
    }
}
