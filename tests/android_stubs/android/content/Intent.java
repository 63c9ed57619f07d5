package android.content;

public class Intent {
  public static final String ACTION_GET_CONTENT = "android.intent.action.GET_CONTENT";
  public Intent(String action) {}
  public Intent setType(String type) { return this; }
  public android.net.Uri getData() { return null; }
  public String getStringExtra(String name) { return null; }
  public int getIntExtra(String name, int defaultValue) { return defaultValue; }
}
