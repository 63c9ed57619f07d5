package dev.edgesr.demo

import android.app.Activity
import android.content.Intent
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.os.Bundle
import android.widget.Button
import android.widget.ImageView
import android.widget.TextView
import dev.edgesr.core.ParityStats
import java.io.File

/**
 * Pick an image; it is upscaled with the FP32 and the INT4 (2DQuant) .tflite found in the app's files folder
 * (fp32.tflite, w4.tflite: `adb push` them to /sdcard/Android/data/dev.edgesr.demo/files/), and both results are
 * shown with latency per tile and in total, the thread count and the kernel path of this phone.
 */
class MainActivity : Activity() {
    private val threads = 2

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        findViewById<TextView>(R.id.status).setText(NativeLib.kernelPaths())
        findViewById<Button>(R.id.pick).setOnClickListener {
            startActivityForResult(Intent(Intent.ACTION_GET_CONTENT).setType("image/*"), PICK)
        }
        findViewById<Button>(R.id.self_test).setOnClickListener { Thread { selfTest() }.start() }
    }

    /**
     * Upscales selftest_input.png with w4.tflite and compares the result with selftest_expected.png, which
     * `edgesr device selftest-pack` made on a desktop from the same file: pass when no value is more than one
     * level off (the desktop parity rule).
     */
    private fun selfTest() {
        val dir = getExternalFilesDir(null)
        val files = listOf("w4.tflite", "selftest_input.png", "selftest_expected.png").map { File(dir, it) }
        val missing = files.filter { !it.isFile }
        val report = if (missing.isNotEmpty()) {
            "self-test: missing ${missing.joinToString { it.name }} (edgesr device selftest-pack, then adb push)"
        } else {
            val input = BitmapFactory.decodeFile(files[1].path)
            val expected = BitmapFactory.decodeFile(files[2].path)
            TiledUpscaler(files[0], threads).use { up ->
                val px = IntArray(input.width * input.height)
                input.getPixels(px, 0, input.width, 0, 0, input.width, input.height)
                val got = up.upscale(px, input.height, input.width)
                val want = IntArray(expected.width * expected.height)
                expected.getPixels(want, 0, expected.width, 0, 0, expected.width, expected.height)
                if (got.size != want.size) {
                    "self-test FAIL: output ${got.size} pixels, expected ${want.size}"
                } else {
                    val stats = ParityStats.of(rgbBytes(got), rgbBytes(want))
                    "self-test ${if (stats.passes()) "PASS" else "FAIL"}: ${stats.toJson()}"
                }
            }
        }
        runOnUiThread { findViewById<TextView>(R.id.status).setText(report) }
    }

    private fun rgbBytes(argb: IntArray): ByteArray = ByteArray(argb.size * 3) { i ->
        ((argb[i / 3] shr (16 - 8 * (i % 3))) and 0xFF).toByte()
    }

    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        val uri = data?.data
        if (requestCode != PICK || resultCode != RESULT_OK || uri == null) return
        val bitmap = contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it) } ?: return
        val status = findViewById<TextView>(R.id.status)
        Thread {
            val lines = StringBuilder("${NativeLib.kernelPaths()}, $threads threads\n")
            for ((name, view) in listOf("fp32" to R.id.fp32_result, "w4" to R.id.int4_result)) {
                val model = File(getExternalFilesDir(null), "$name.tflite")
                if (!model.isFile) {
                    lines.append("$name: ${model.path} missing\n")
                    continue
                }
                TiledUpscaler(model, threads).use { up ->
                    val w = bitmap.width
                    val h = bitmap.height
                    val px = IntArray(w * h)
                    bitmap.getPixels(px, 0, w, 0, 0, w, h)
                    val t0 = System.nanoTime()
                    val out = up.upscale(px, h, w)
                    val total = (System.nanoTime() - t0) / 1e6
                    val result = Bitmap.createBitmap(w * up.scale, h * up.scale, Bitmap.Config.ARGB_8888)
                    result.setPixels(out, 0, w * up.scale, 0, 0, w * up.scale, h * up.scale)
                    val perTile = up.tileMillis.sorted()[up.tileMillis.size / 2]
                    lines.append("$name: ${"%.1f".format(total)} ms, ${up.tileMillis.size} tiles, " +
                        "${"%.1f".format(perTile)} ms/tile\n")
                    runOnUiThread { findViewById<ImageView>(view).setImageBitmap(result) }
                }
            }
            runOnUiThread { status.setText(lines.toString()) }
        }.start()
    }

    companion object {
        private const val PICK = 1
    }
}
