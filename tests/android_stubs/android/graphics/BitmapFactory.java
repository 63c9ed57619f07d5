package android.graphics;

public class BitmapFactory {
  public static Bitmap decodeStream(java.io.InputStream is) { return null; }
  public static Bitmap decodeFile(String pathName) { return null; }
}
