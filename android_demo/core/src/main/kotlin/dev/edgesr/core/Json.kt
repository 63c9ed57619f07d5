package dev.edgesr.core

/** The few JSON shapes the app writes (benchmark results the device tooling pulls) and reads (golden files). */
object Json {
    fun obj(vararg fields: Pair<String, Any?>): String =
        fields.joinToString(", ", "{", "}") { (k, v) -> "${str(k)}: ${value(v)}" }

    fun value(v: Any?): String = when (v) {
        null -> "null"
        is String -> str(v)
        is Boolean, is Int, is Long -> v.toString()
        is Double -> if (v.isFinite()) v.toString() else "null"
        is Float -> value(v.toDouble())
        is Map<*, *> -> v.entries.joinToString(", ", "{", "}") { "${str(it.key.toString())}: ${value(it.value)}" }
        is Iterable<*> -> v.joinToString(", ", "[", "]") { value(it) }
        is IntArray -> v.joinToString(", ", "[", "]")
        is DoubleArray -> v.joinToString(", ", "[", "]") { value(it) }
        else -> str(v.toString())
    }

    private fun str(s: String): String = buildString {
        append('"')
        for (c in s) when {
            c == '"' -> append("\\\"")
            c == '\\' -> append("\\\\")
            c < ' ' -> append("\\u%04x".format(c.code))
            else -> append(c)
        }
        append('"')
    }

    /** Parses numbers, strings, booleans, null, arrays and objects (enough for edgesr's own files). */
    fun parse(text: String): Any? = Parser(text).run { val v = value(); skip(); require(pos == text.length) { "trailing data at $pos" }; v }

    private class Parser(val s: String) {
        var pos = 0

        fun skip() {
            while (pos < s.length && s[pos].isWhitespace()) pos++
        }

        fun value(): Any? {
            skip()
            require(pos < s.length) { "unexpected end of JSON" }
            return when (val c = s[pos]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c.isDigit()) number() else error("unexpected '$c' at $pos")
            }
        }

        fun literal(word: String, v: Any?): Any? {
            require(s.startsWith(word, pos)) { "bad literal at $pos" }
            pos += word.length
            return v
        }

        fun number(): Double {
            val start = pos
            while (pos < s.length && (s[pos].isDigit() || s[pos] in "+-.eE")) pos++
            return s.substring(start, pos).toDouble()
        }

        fun string(): String = buildString {
            pos++
            while (s[pos] != '"') {
                if (s[pos] == '\\') {
                    pos++
                    when (val e = s[pos]) {
                        'n' -> append('\n'); 't' -> append('\t'); 'r' -> append('\r'); 'b' -> append('\b'); 'f' -> append('\u000c')
                        'u' -> { append(s.substring(pos + 1, pos + 5).toInt(16).toChar()); pos += 4 }
                        else -> append(e)
                    }
                } else append(s[pos])
                pos++
            }
            pos++
        }

        fun arr(): List<Any?> {
            pos++
            val out = mutableListOf<Any?>()
            skip()
            if (s[pos] == ']') { pos++; return out }
            while (true) {
                out.add(value())
                skip()
                if (s[pos++] == ']') return out
            }
        }

        fun obj(): Map<String, Any?> {
            pos++
            val out = linkedMapOf<String, Any?>()
            skip()
            if (s[pos] == '}') { pos++; return out }
            while (true) {
                skip()
                val k = string()
                skip()
                require(s[pos++] == ':') { "expected ':' at ${pos - 1}" }
                out[k] = value()
                skip()
                if (s[pos++] == '}') return out
            }
        }
    }
}
