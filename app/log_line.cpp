#include "log_line.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

namespace shardsync::app {

void log_line(std::string_view component, std::string_view level, std::string_view message) {
  static std::mutex mutex;  // lines from several threads never interleave
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &utc);
  std::string upper(level);
  for (char& c : upper) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c);
  std::lock_guard lock(mutex);
  std::fprintf(stderr, "%s %s %.*s %.*s\n", stamp, upper.c_str(),
               static_cast<int>(component.size()), component.data(),
               static_cast<int>(message.size()), message.data());
}

}  // namespace shardsync::app
