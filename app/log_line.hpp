#pragma once
// One line per event on stderr: "2026-11-24T16:20:01Z WARN server message".

#include <string_view>

namespace shardsync::app {

void log_line(std::string_view component, std::string_view level, std::string_view message);

}  // namespace shardsync::app
