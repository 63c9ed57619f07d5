package android.graphics;

public class Bitmap {
  public enum Config { ARGB_8888 }
  public static Bitmap createBitmap(int width, int height, Config config) { return null; }
  public int getWidth() { return 0; }
  public int getHeight() { return 0; }
  public void getPixels(int[] pixels, int offset, int stride, int x, int y, int width, int height) {}
  public void setPixels(int[] pixels, int offset, int stride, int x, int y, int width, int height) {}
}
