package dev.edgesr.core

/** Image layouts: the app's tiles are (H, W, 3) row-major; .pte models take and return (3, H, W) planes. */
object Layout {
    fun hwcToChw(hwc: FloatArray, h: Int, w: Int, c: Int = 3): FloatArray {
        require(hwc.size == h * w * c) { "expected $h x $w x $c values, got ${hwc.size}" }
        val plane = h * w
        return FloatArray(c * plane) { i -> hwc[(i % plane) * c + i / plane] }
    }

    fun chwToHwc(chw: FloatArray, h: Int, w: Int, c: Int = 3): FloatArray {
        require(chw.size == h * w * c) { "expected $c x $h x $w values, got ${chw.size}" }
        val plane = h * w
        return FloatArray(c * plane) { i -> chw[(i % c) * plane + i / c] }
    }
}
