// A client program built against the installed package: it runs tasks on the custom engine
// that check.sh started (consumer_engine with libconsumer_tasks.so) and checks the values.
//   consumer_client PROFILE_DIR
#include <iostream>
#include <ipcpp/client.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer_client PROFILE_DIR\n";
    return 2;
  }
  try {
    ipcpp::ClientOptions options;
    options.profile_dir = argv[1];
    options.timeout = ipcpp::Seconds(30);
    ipcpp::Client rc(options);
    rc.wait_for_engines(1, ipcpp::Seconds(30));
    const double twice = rc[rc.ids().front()].apply_sync("consumer_twice", 21).as<double>();
    const auto hello = rc.load_balanced_view().apply_sync("consumer_hello", "package");
    std::cout << "consumer_twice(21) = " << twice
              << ", consumer_hello(\"package\") = " << hello.dump() << "\n";
    return twice == 42 && hello.as<std::string>() == "hello, package" ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "consumer_client: " << e.what() << "\n";
    return 1;
  }
}
