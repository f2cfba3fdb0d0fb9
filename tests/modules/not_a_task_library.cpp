// A shared library without the ipcpp_task_library_v1 symbol: --load must refuse it.
extern "C" int not_a_task(int x) {
  return x + 1;
}
