// Compile-time stand-in for LiteRT's Java Interpreter API (com.google.ai.edge.litert:litert): signatures only.
package org.tensorflow.lite;

public class Interpreter implements AutoCloseable {
  public static class Options {
    public Options setNumThreads(int numThreads) { return this; }
    public Options addDelegate(Delegate delegate) { return this; }
  }
  public Interpreter(java.io.File modelFile, Options options) {}
  public Tensor getInputTensor(int inputIndex) { return null; }
  public Tensor getOutputTensor(int outputIndex) { return null; }
  public void run(Object input, Object output) {}
  @Override
  public void close() {}
}
