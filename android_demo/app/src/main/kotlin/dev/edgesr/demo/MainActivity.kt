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
import dev.edgesr.core.TiledUpscaler
import java.io.File

/**
 * Pick an image; it is upscaled with every FP32 and INT4 (2DQuant) model found in the app's files folder
 * (fp32.tflite, w4.tflite, fp32.pte, w4.pte: `adb push` them to /sdcard/Android/data/dev.edgesr.demo/files/), and
 * the results are shown with latency per tile and in total, the thread count and the kernel path of this phone.
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
     * Upscales selftest_input.png with w4.tflite and w4.pte (those present) and compares each result with
     * selftest_expected_<file>.png, which `edgesr device selftest-pack --model <file>` made on a desktop from the
     * same input: pass when no value is more than one level off (the desktop parity rule).
     */
    private fun selfTest() {
        val dir = getExternalFilesDir(null)
        val models = MODEL_FILES.map { File(dir, "w4$it") }.filter { it.isFile }
        val input = File(dir, "selftest_input.png")
        val report = if (models.isEmpty() || !input.isFile) {
            "self-test: needs selftest_input.png and w4.tflite or w4.pte (edgesr device selftest-pack, then adb push)"
        } else {
            val bitmap = BitmapFactory.decodeFile(input.path)
            val px = bitmap.argb()
            models.joinToString("\n") { model ->
                val expectedFile = File(dir, "selftest_expected_${model.name}.png")
                if (!expectedFile.isFile) return@joinToString "self-test ${model.name}: missing ${expectedFile.name}"
                val want = BitmapFactory.decodeFile(expectedFile.path).argb()
                try {
                    val got = TiledUpscaler(openTileModel(model, threads)).use {
                        it.upscale(px, bitmap.height, bitmap.width)
                    }
                    if (got.size != want.size) {
                        "self-test ${model.name} FAIL: output ${got.size} pixels, expected ${want.size}"
                    } else {
                        val stats = ParityStats.of(rgbBytes(got), rgbBytes(want))
                        "self-test ${model.name} ${if (stats.passes()) "PASS" else "FAIL"}: ${stats.toJson()}"
                    }
                } catch (e: Exception) {
                    "self-test ${model.name} FAIL: ${e.message}"
                }
            }
        }
        runOnUiThread { findViewById<TextView>(R.id.status).setText(report) }
    }

    /** The bitmap's pixels, packed ARGB, row-major. */
    private fun Bitmap.argb(): IntArray = IntArray(width * height).also { getPixels(it, 0, width, 0, 0, width, height) }

    private fun rgbBytes(argb: IntArray): ByteArray = ByteArray(argb.size * 3) { i ->
        ((argb[i / 3] shr (16 - 8 * (i % 3))) and 0xFF).toByte()
    }

    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        val uri = data?.data
        if (requestCode != PICK || resultCode != RESULT_OK || uri == null) return
        val bitmap = contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it) } ?: return
        val status = findViewById<TextView>(R.id.status)
        Thread {
            val w = bitmap.width
            val h = bitmap.height
            val px = bitmap.argb()
            val lines = StringBuilder("${NativeLib.kernelPaths()}, $threads threads\n")
            for ((name, view) in listOf("fp32" to R.id.fp32_result, "w4" to R.id.int4_result)) {
                val models = MODEL_FILES.map { File(getExternalFilesDir(null), "$name$it") }.filter { it.isFile }
                if (models.isEmpty()) lines.append("$name: no $name.tflite or $name.pte in ${getExternalFilesDir(null)}\n")
                for (model in models) {
                    val line = try {
                        TiledUpscaler(openTileModel(model, threads)).use { up ->
                            val t0 = System.nanoTime()
                            val out = up.upscale(px, h, w)
                            val total = (System.nanoTime() - t0) / 1e6
                            val result = Bitmap.createBitmap(w * up.scale, h * up.scale, Bitmap.Config.ARGB_8888)
                            result.setPixels(out, 0, w * up.scale, 0, 0, w * up.scale, h * up.scale)
                            val perTile = up.tileMillis.sorted()[up.tileMillis.size / 2]
                            runOnUiThread { findViewById<ImageView>(view).setImageBitmap(result) }
                            "${model.name}: ${"%.1f".format(total)} ms, ${up.tileMillis.size} tiles, " +
                                "${"%.1f".format(perTile)} ms/tile"
                        }
                    } catch (e: Exception) {
                        "${model.name}: ${e.message}"
                    }
                    lines.append(line).append('\n')
                }
            }
            runOnUiThread { status.setText(lines.toString()) }
        }.start()
    }

    companion object {
        private const val PICK = 1
        private val MODEL_FILES = listOf(".tflite", ".pte")
    }
}
