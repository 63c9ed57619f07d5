// The edgesr demo app. Open this folder in Android Studio (with the NDK installed) and run :app.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "edgesr-demo"
include(":app")
