// Uses the installed public headers and library; exits 0 when they work.
#include <iostream>
#include <ipcpp/value.hpp>

int main() {
  const ipcpp::Value v = ipcpp::Value::list(
      {ipcpp::Value(std::vector<double>{1, 2, 3}), ipcpp::Value(nlohmann::json("x"))});
  const auto xs = v[0].as<std::vector<double>>();
  std::cout << v.json().dump() << "\n";
  return xs.size() == 3 && xs[2] == 3.0 && v[1].as<std::string>() == "x" ? 0 : 1;
}
