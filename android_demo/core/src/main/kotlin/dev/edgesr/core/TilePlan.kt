package dev.edgesr.core

/**
 * The tile plan of runtime/TILING.md (spec v1), the same rules as Python's edgesr.runtime.tiling: rows and
 * columns are planned independently; a tile is one row start x one column start.
 */
class AxisPlan(val length: Int, val tile: Int, val starts: IntArray, val pad: Int) {

    /** (tiles x length * scale) blend weights in output coordinates; every column sums to 1. */
    fun weights(scale: Int, feather: Boolean = true): Array<DoubleArray> {
        val outLen = length * scale
        val t = tile * scale
        val w = Array(starts.size) { DoubleArray(outLen) }
        for (i in starts.indices) {
            for (x in starts[i] * scale until minOf(starts[i] * scale + t, outLen)) w[i][x] = 1.0
        }
        for (i in 0 until starts.size - 1) {
            val lo = starts[i + 1] * scale
            val hi = starts[i] * scale + t // overlap [lo, hi)
            val span = hi - lo
            if (span <= 0) continue
            for (p in 0 until span) {
                val down: Double
                val up: Double
                if (feather) {
                    down = (span - p - 0.5) / span
                    up = (p + 0.5) / span
                } else {
                    up = if (p >= span / 2) 1.0 else 0.0
                    down = 1.0 - up
                }
                w[i][lo + p] = if (i > 0 && feather) minOf(w[i][lo + p], down) else down
                w[i + 1][lo + p] = up
            }
        }
        for (x in 0 until outLen) {
            var sum = 0.0
            for (row in w) sum += row[x]
            for (row in w) row[x] /= sum
        }
        return w
    }

    companion object {
        /** Starts 0, t - o, 2(t - o), ... while < L - t, then L - t; one start and padding when L <= t. */
        fun plan(length: Int, tile: Int, overlap: Int): AxisPlan {
            require(length >= 1 && tile >= 1) { "length and tile must be positive, got $length and $tile" }
            require(overlap in 0 until tile) { "overlap must be in [0, tile), got $overlap for tile $tile" }
            if (length <= tile) return AxisPlan(length, tile, intArrayOf(0), tile - length)
            val stride = tile - overlap
            val starts = sortedSetOf<Int>()
            var s = 0
            while (s < length - tile) {
                starts.add(s)
                s += stride
            }
            starts.add(length - tile)
            return AxisPlan(length, tile, starts.toIntArray(), 0)
        }
    }
}

class TilePlan(val rows: AxisPlan, val cols: AxisPlan, val scale: Int) {
    val count: Int get() = rows.starts.size * cols.starts.size

    companion object {
        fun plan(height: Int, width: Int, tileH: Int, tileW: Int, overlap: Int, scale: Int) =
            TilePlan(AxisPlan.plan(height, tileH, overlap), AxisPlan.plan(width, tileW, overlap), scale)
    }
}

/**
 * Source index of position [i] of an axis of [length] pixels mirror-padded to [paddedLength] by the spec's rule
 * (numpy "symmetric", edge pixel repeated; repeated while still short). Example: 2 -> 5 reads 0 1 | 1 0 | 0.
 */
fun mirrorSource(i: Int, length: Int, paddedLength: Int): Int {
    require(i in 0 until paddedLength && length >= 1) { "index $i outside 0..${paddedLength - 1}" }
    val lengths = mutableListOf(length)
    while (lengths.last() < paddedLength) lengths.add(lengths.last() + minOf(paddedLength - lengths.last(), lengths.last()))
    var x = i
    for (k in lengths.size - 1 downTo 1) {
        val n = lengths[k - 1]
        if (x >= n) x = n - 1 - (x - n)
    }
    return x
}
