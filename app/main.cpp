// shardsync: keeps copies of checkpoints and datasets in sync over HTTP with ResourceSync.

#include <curl/curl.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "commands.hpp"

int main(int argc, char** argv) {
  using namespace shardsync::app;
  CLI::App app{"shardsync: ResourceSync for checkpoints and datasets over plain HTTP", "shardsync"};
  app.set_version_flag("--version", "shardsync 0.1.0");
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  shardsync serve --collection ckpt=./checkpoints --listen 0.0.0.0:8080\n"
      "  shardsync sync http://host:8080/ ./mirror --collection ckpt\n"
      "  shardsync sitemap check https://example.org/dataset/resourcelist.xml\n"
      "  shardsync sitemap build ./shards --base-url https://example.org/shards/ --out ./site");

  curl_global_init(CURL_GLOBAL_DEFAULT);
  int exit_code = kExitOk;
  add_sitemap_command(app, exit_code);
  add_serve_command(app, exit_code);
  add_publish_command(app, exit_code);
  add_sync_command(app, exit_code);
  add_bridge_command(app, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 uses codes of 100 and up for usage errors; ours is 2.
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shardsync: %s\n", e.what());
    return kExitFailure;
  }
  return exit_code;
}
