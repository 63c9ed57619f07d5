package android.content;

public class Context {
  public java.io.File getFilesDir() { return null; }
  public java.io.File getExternalFilesDir(String type) { return null; }
  public ContentResolver getContentResolver() { return null; }
}
