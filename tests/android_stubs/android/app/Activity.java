// Compile-time stand-ins for the Android framework classes the demo app uses (no android.jar here): signatures only.
package android.app;

public class Activity extends android.content.Context {
  protected void onCreate(android.os.Bundle savedInstanceState) {}
  protected void onActivityResult(int requestCode, int resultCode, android.content.Intent data) {}
  public void setContentView(int layoutResID) {}
  public <T extends android.view.View> T findViewById(int id) { return null; }
  public android.content.Intent getIntent() { return null; }
  public void startActivityForResult(android.content.Intent intent, int requestCode) {}
  public void runOnUiThread(Runnable action) {}
  public void finish() {}
  public static final int RESULT_OK = -1;
}
