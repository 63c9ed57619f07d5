package dev.edgesr.demo

import android.app.Activity
import android.os.Bundle
import dev.edgesr.core.Json
import dev.edgesr.core.TiledUpscaler
import java.io.File

/**
 * Benchmark mode, for the device tooling:
 *   adb shell am start -n dev.edgesr.demo/.BenchmarkActivity --es model /data/local/tmp/edgesr/w4.tflite \
 *       --ei threads 2 --ei repeats 20
 * runs one tile of the model repeatedly and writes benchmark.json (latencies, threads, kernel paths) into the app's
 * external files folder, where `adb pull` finds it.
 */
class BenchmarkActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val model = File(intent.getStringExtra("model") ?: "")
        val threads = intent.getIntExtra("threads", 1)
        val repeats = intent.getIntExtra("repeats", 20)
        val out = File(getExternalFilesDir(null), "benchmark.json")
        val result = try {
            TiledUpscaler(openTileModel(model, threads)).use { up ->
                val tile = IntArray(up.tileH * up.tileW) { 0xFF808080.toInt() }
                up.upscale(tile, up.tileH, up.tileW, overlap = 0) // warm-up
                val ms = (0 until repeats).map { up.upscale(tile, up.tileH, up.tileW, overlap = 0); up.tileMillis[0] }
                val sorted = ms.sorted()
                Json.obj("model" to model.path, "threads" to threads, "tile" to listOf(up.tileH, up.tileW),
                         "ms_median" to sorted[sorted.size / 2], "ms_min" to sorted.first(), "ms" to ms,
                         "kernel_paths" to NativeLib.kernelPaths(), "ok" to true)
            }
        } catch (e: Exception) {
            Json.obj("model" to model.path, "ok" to false, "error" to e.toString())
        }
        out.writeText(result + "\n")
        finish()
    }
}
