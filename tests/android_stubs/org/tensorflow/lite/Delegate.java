// Compile-time stand-in for LiteRT's org.tensorflow.lite.Delegate (the published AAR is not reachable here);
// the signatures the demo app uses, nothing else.
package org.tensorflow.lite;

public interface Delegate extends AutoCloseable {
  long getNativeHandle();

  @Override
  default void close() {}
}
