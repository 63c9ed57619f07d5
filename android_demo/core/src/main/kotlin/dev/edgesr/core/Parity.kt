package dev.edgesr.core

import kotlin.math.abs
import kotlin.math.log10
import kotlin.math.max

/** Desktop-vs-device statistics of two uint8 RGB images, as `edgesr parity` reports them. */
data class ParityStats(val psnr: Double, val maxAbs: Int, val shareOffByMoreThanOne: Double, val pixels: Int) {
    fun passes(minPsnr: Double = 40.0, maxAbsLimit: Int = 1): Boolean = psnr >= minPsnr && maxAbs <= maxAbsLimit

    fun toJson(): String = Json.obj(
        "psnr" to (if (psnr.isInfinite()) null else psnr), "max_abs" to maxAbs,
        "share_off_by_more_than_1" to shareOffByMoreThanOne, "pixels" to pixels,
    )

    companion object {
        /** [a] and [b]: interleaved RGB bytes of the same size (values 0..255 as unsigned bytes). */
        fun of(a: ByteArray, b: ByteArray): ParityStats {
            require(a.size == b.size && a.size % 3 == 0) { "images differ in size: ${a.size} vs ${b.size} bytes" }
            var sq = 0.0
            var worst = 0
            var off = 0
            for (i in a.indices) {
                val d = abs((a[i].toInt() and 0xFF) - (b[i].toInt() and 0xFF))
                sq += d.toDouble() * d
                worst = max(worst, d)
                if (d > 1) off++
            }
            val mse = sq / a.size
            val psnr = if (mse == 0.0) Double.POSITIVE_INFINITY else 10.0 * log10(255.0 * 255.0 / mse)
            return ParityStats(psnr, worst, off.toDouble() / a.size, a.size / 3)
        }
    }
}
