#pragma once
// The subcommands of the one `shardsync` binary. Each registers itself on the CLI11 app and,
// when run, stores its exit code in `exit_code`.

namespace CLI {
class App;
}

namespace shardsync::app {

// Exit codes shared by every command (scripts rely on them).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitPartial = 3;

void add_sitemap_command(CLI::App& app, int& exit_code);
void add_serve_command(CLI::App& app, int& exit_code);
void add_publish_command(CLI::App& app, int& exit_code);
void add_sync_command(CLI::App& app, int& exit_code);    // sync and audit
void add_bridge_command(CLI::App& app, int& exit_code);  // bridge inspect, worker, aggregate
void add_bridge_worker_command(CLI::App* bridge, int& exit_code);
void add_bridge_aggregate_command(CLI::App* bridge, int& exit_code);

}  // namespace shardsync::app
