plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.edgesr.demo"
    compileSdk = 35
    ndkVersion = "27.2.12479018"

    defaultConfig {
        applicationId = "dev.edgesr.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
        ndk { abiFilters += listOf("arm64-v8a") }
        // The ExecuTorch release the CMake build compiles for .pte files: the exporter's (gradle.properties).
        externalNativeBuild {
            cmake { arguments += listOf("-DEDGESR_EXECUTORCH_VERSION=${property("edgesr.executorchVersion")}") }
        }
    }
    // The JNI glue, the edgesr LiteRT delegate, the kernels and (for .pte files) ExecuTorch's runtime with the
    // edgesr backend, built from the repository's sources (no copies) and ExecuTorch's source release.
    externalNativeBuild {
        cmake {
            path = file("src/main/cpp/CMakeLists.txt")
            version = "3.22.1"
        }
    }
    // The pure module (tile plan, parity statistics, result JSON) is compiled into the app as source.
    sourceSets["main"].kotlin.srcDirs("src/main/kotlin", "../core/src/main/kotlin")
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    implementation("com.google.ai.edge.litert:litert:${property("edgesr.litertVersion")}")
}
