#pragma once

namespace CLI {
class App;
}

namespace shardsync::app {

// `shardsync sitemap build DIR …`: publishes a directory tree as static ResourceSync
// documents (Source Description, Capability List, Resource List with an index past 50,000).
void add_build_command(CLI::App& sitemap, int& exit_code);

}  // namespace shardsync::app
