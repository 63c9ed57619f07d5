package dev.edgesr.core

/**
 * One exported edgesr model on its static LR tile: RGB floats in [0, 1], row-major (H, W, 3) in, the same at
 * scale times the size out. The file says its own tile and scale; [window] is the multiple inputs are padded to.
 */
interface TileModel : AutoCloseable {
    val tileH: Int
    val tileW: Int
    val scale: Int
    val window: Int

    fun run(tile: FloatArray): FloatArray
}

/**
 * A [TileModel] run over a whole RGB image with the tile plan of runtime/TILING.md, as edgesr's desktop runtime
 * does: mirror padding to the model's window multiple, feathered blend in float32, clip and floor(v * 255 + 0.5),
 * with the same float32 operations in the same order, so both give the same bytes for the same tile outputs.
 * Closing it closes the model.
 */
class TiledUpscaler(val model: TileModel) : AutoCloseable {
    val tileH get() = model.tileH
    val tileW get() = model.tileW
    val scale get() = model.scale
    var tileMillis = mutableListOf<Double>()
        private set

    /** (h x w) packed ARGB pixels -> (h*s x w*s) packed ARGB pixels. */
    fun upscale(pixels: IntArray, h0: Int, w0: Int, overlap: Int = 16): IntArray {
        val window = model.window
        val h1 = h0 + (window - h0 % window) % window
        val w1 = w0 + (window - w0 % window) % window
        val rows = AxisPlan.plan(h1, tileH, minOf(overlap, tileH - 1))
        val cols = AxisPlan.plan(w1, tileW, minOf(overlap, tileW - 1))
        val wr = rows.weights(scale)
        val wc = cols.weights(scale)
        val oh = h1 * scale
        val ow = w1 * scale
        val tw = tileW * scale
        val acc = FloatArray(oh * ow * 3)
        val input = FloatArray(tileH * tileW * 3)
        tileMillis = mutableListOf()
        for ((i, r0) in rows.starts.withIndex()) for ((j, c0) in cols.starts.withIndex()) {
            for (y in 0 until tileH) {
                val sy = mirrorSource(mirrorSource(r0 + y, h1, h1 + rows.pad), h0, h1)
                for (x in 0 until tileW) {
                    val sx = mirrorSource(mirrorSource(c0 + x, w1, w1 + cols.pad), w0, w1)
                    val p = pixels[sy * w0 + sx]
                    val at = (y * tileW + x) * 3
                    input[at] = ((p shr 16) and 0xFF) / 255f
                    input[at + 1] = ((p shr 8) and 0xFF) / 255f
                    input[at + 2] = (p and 0xFF) / 255f
                }
            }
            val t0 = System.nanoTime()
            val output = model.run(input)
            tileMillis.add((System.nanoTime() - t0) / 1e6)
            val oy = r0 * scale
            val ox = c0 * scale
            for (y in 0 until minOf(tileH * scale, oh - oy)) for (x in 0 until minOf(tw, ow - ox)) {
                val weight = (wr[i][oy + y] * wc[j][ox + x]).toFloat()
                for (k in 0 until 3) acc[((oy + y) * ow + ox + x) * 3 + k] += output[(y * tw + x) * 3 + k] * weight
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

    override fun close() = model.close()
}
