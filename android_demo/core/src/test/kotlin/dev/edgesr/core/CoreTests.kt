package dev.edgesr.core

import java.io.File
import kotlin.math.abs
import kotlin.system.exitProcess

/**
 * JVM tests of the pure module, run by tests/test_android_core.py (no JUnit: Maven Central is out of reach
 * here): the golden tile plans shared with Python, mirror padding, parity statistics, the JSON writer, and
 * (with a second argument) whole tiled upscales that Python made with the same stand-in model.
 * Usage: CoreTestsKt <tile_plans folder> [<tiled cases folder>]. Prints one line per check; exits 1 on the first
 * failure.
 */
private var checks = 0

private fun check(ok: Boolean, what: () -> String) {
    checks++
    if (!ok) {
        println("FAIL ${what()}")
        exitProcess(1)
    }
}

private fun goldenPlans(folder: File) {
    val files = folder.listFiles { f -> f.name.endsWith(".json") }!!.sortedBy { it.name }
    check(files.size >= 5) { "expected >= 5 golden plans in $folder, found ${files.size}" }
    for (f in files) {
        @Suppress("UNCHECKED_CAST")
        val g = Json.parse(f.readText()) as Map<String, Any?>
        val num = { k: String -> (g[k] as Double).toInt() }
        val plan = AxisPlan.plan(num("length"), num("tile"), num("overlap"))
        val starts = (g["starts"] as List<*>).map { (it as Double).toInt() }
        check(plan.starts.toList() == starts) { "${f.name}: starts ${plan.starts.toList()} != $starts" }
        check(plan.pad == num("pad")) { "${f.name}: pad ${plan.pad} != ${num("pad")}" }
        for ((key, feather) in listOf("weights_feathered" to true, "weights_split" to false)) {
            val want = (g[key] as List<*>).map { row -> (row as List<*>).map { it as Double } }
            val got = plan.weights(num("scale"), feather)
            check(got.size == want.size) { "${f.name} $key: ${got.size} tiles != ${want.size}" }
            for (i in want.indices) for (x in want[i].indices) {
                check(abs(got[i][x] - want[i][x]) <= 1e-8) { "${f.name} $key[$i][$x]: ${got[i][x]} != ${want[i][x]}" }
            }
        }
        println("ok golden ${f.name}")
    }
}

private fun planProperties() {
    for (length in 1..300 step 7) for (tile in listOf(8, 16, 64)) for (overlap in listOf(0, tile / 4, tile / 2)) {
        val p = AxisPlan.plan(length, tile, overlap)
        val covered = BooleanArray(maxOf(length, tile))
        for (s in p.starts) for (x in s until s + tile) covered[x] = true
        check((0 until length).all { covered[it] }) { "L=$length t=$tile o=$overlap leaves pixels uncovered" }
        val w = p.weights(2)
        for (x in 0 until length * 2) {
            val sum = w.sumOf { it[x] }
            check(abs(sum - 1.0) < 1e-12) { "L=$length t=$tile o=$overlap: weights sum to $sum at $x" }
        }
    }
    check(TilePlan.plan(750, 1000, 64, 64, 16, 4).count == 16 * 21) { "1000x750 plan count" }
    println("ok plan properties")
}

private fun mirror() {
    check((0 until 5).map { mirrorSource(it, 2, 5) } == listOf(0, 1, 1, 0, 0)) { "mirror 2 -> 5" }
    check((0 until 8).map { mirrorSource(it, 5, 8) } == listOf(0, 1, 2, 3, 4, 4, 3, 2)) { "mirror 5 -> 8" }
    check((0 until 4).map { mirrorSource(it, 1, 4) } == listOf(0, 0, 0, 0)) { "mirror 1 -> 4" }
    println("ok mirror padding")
}

private fun parity() {
    val a = ByteArray(300) { (it % 256).toByte() }
    val same = ParityStats.of(a, a.copyOf())
    check(same.psnr.isInfinite() && same.maxAbs == 0 && same.passes()) { "identical images" }
    val b = a.copyOf()
    b[0] = (b[0] + 1).toByte()
    b[5] = (b[5] + 3).toByte()
    val s = ParityStats.of(a, b)
    val wantPsnr = 10 * kotlin.math.log10(255.0 * 255.0 / ((1.0 + 9.0) / 300))
    check(s.maxAbs == 3 && abs(s.psnr - wantPsnr) < 1e-9 && s.shareOffByMoreThanOne == 1.0 / 300) { "stats $s" }
    check(!s.passes()) { "max abs 3 must fail the default 1-level check" }
    check(s.toJson().startsWith("{\"psnr\": ") && "\"max_abs\": 3" in s.toJson()) { "json ${s.toJson()}" }
    println("ok parity statistics")
}

private fun json() {
    val text = Json.obj("model" to "w4 \"x\".tflite", "threads" to 2, "ms" to listOf(1.5, 2.0), "ok" to true, "none" to null)
    @Suppress("UNCHECKED_CAST")
    val back = Json.parse(text) as Map<String, Any?>
    check(back["model"] == "w4 \"x\".tflite" && back["threads"] == 2.0 && back["ms"] == listOf(1.5, 2.0)) { text }
    check(back["ok"] == true && back.containsKey("none") && back["none"] == null) { text }
    println("ok json")
}

/**
 * A stand-in model whose output depends on the position inside the tile, so a wrong blend weight, tile start or
 * padding changes the bytes: nearest-neighbour upscale, times 0.75, plus ((3x + y + k) mod 5) / 16 (exact in
 * float32). tests/test_android_core.py computes the same with numpy.
 */
private class RampModel(override val tileH: Int, override val tileW: Int, override val scale: Int,
                        override val window: Int) : TileModel {
    override fun run(tile: FloatArray): FloatArray {
        val ow = tileW * scale
        return FloatArray(tileH * scale * ow * 3) { i ->
            val k = i % 3
            val x = (i / 3) % ow
            val y = i / 3 / ow
            tile[((y / scale) * tileW + x / scale) * 3 + k] * 0.75f + ((3 * x + y + k) % 5) * 0.0625f
        }
    }

    override fun close() {}
}

/** Each case: <name>.json (image size, tile, scale, window, overlap), <name>.in.rgb, <name>.out.rgb (bytes). */
private fun tiledCases(folder: File) {
    val cases = folder.listFiles { f -> f.name.endsWith(".json") }!!.sortedBy { it.name }
    check(cases.isNotEmpty()) { "no tiled cases in $folder" }
    for (f in cases) {
        @Suppress("UNCHECKED_CAST")
        val g = Json.parse(f.readText()) as Map<String, Any?>
        val num = { k: String -> (g[k] as Double).toInt() }
        val (h, w, s) = Triple(num("height"), num("width"), num("scale"))
        val rgb = File(folder, f.name.removeSuffix(".json") + ".in.rgb").readBytes()
        val want = File(folder, f.name.removeSuffix(".json") + ".out.rgb").readBytes()
        val pixels = IntArray(h * w) { i ->
            (0xFF shl 24) or ((rgb[3 * i].toInt() and 0xFF) shl 16) or ((rgb[3 * i + 1].toInt() and 0xFF) shl 8) or
                (rgb[3 * i + 2].toInt() and 0xFF)
        }
        val model = RampModel(num("tile_h"), num("tile_w"), s, num("window"))
        val got = TiledUpscaler(model).use { it.upscale(pixels, h, w, num("overlap")) }
        check(got.size == want.size / 3) { "${f.name}: ${got.size} pixels, expected ${want.size / 3}" }
        var differing = 0
        for (i in got.indices) for (k in 0 until 3) {
            if (((got[i] shr (16 - 8 * k)) and 0xFF) != (want[3 * i + k].toInt() and 0xFF)) differing++
        }
        check(differing == 0) { "${f.name}: $differing of ${want.size} values differ from Python's tiled upscale" }
        println("ok tiled ${f.name}")
    }
}

private fun layout() {
    // (h, w, c) = (2, 3, 3): value = 100 y + 10 x + c in HWC; CHW puts channel planes first.
    val hwc = FloatArray(18) { i -> (100 * (i / 9) + 10 * ((i / 3) % 3) + i % 3).toFloat() }
    val chw = Layout.hwcToChw(hwc, 2, 3)
    check(chw[0] == 0f && chw[1] == 10f && chw[3] == 100f && chw[6] == 1f && chw[17] == 122f) { "chw ${chw.toList()}" }
    check(Layout.chwToHwc(chw, 2, 3).contentEquals(hwc)) { "round trip" }
    println("ok layout")
}

fun main(args: Array<String>) {
    goldenPlans(File(args[0]))
    if (args.size > 1) tiledCases(File(args[1]))
    planProperties()
    mirror()
    parity()
    json()
    layout()
    println("ALL PASSED ($checks checks)")
}
