// shardsync serve: publishes directories as ResourceSync resource sets over HTTP(S).

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "log_line.hpp"
#include "shardsync/server/errc.hpp"
#include "shardsync/server/http_server.hpp"
#include "shardsync/server/notifier.hpp"
#include "shardsync/server/source.hpp"
#include "token_file.hpp"

namespace shardsync::app {
namespace {

namespace fs = std::filesystem;
using namespace shardsync::server;

// Flags as given; unset ones fall back to the config file, then to defaults.
struct ServeFlags {
  std::vector<std::string> collections;  // NAME=DIR
  std::optional<std::string> listen, state_dir, base_url, port_file, config, write_token_file,
      tls_cert, tls_key;
  std::vector<std::string> read_token_files;  // NAME=FILE
  std::optional<std::uint64_t> rescan_interval_s, retention_s, list_entries, max_connections;
  bool notify = false;                        // push notifications (topics, hub, streams)
  std::vector<std::string> push_allow_hosts;  // callback hosts the hub may connect to
  std::optional<std::uint64_t> max_subscriptions, max_event_streams, rebuild_delay_ms;
  std::optional<bool> dumps;
  std::optional<std::uint64_t> dump_package_size, dump_delay_s, dump_keep;
};

Result<std::string> read_token(const std::string& path) {
  auto token = read_token_file(path, 16);
  if (!token) return fail(errc::invalid_config, token.error().detail);
  return token;
}

// Reads the JSON config into the flags that were not given on the command line.
Result<void> apply_config(ServeFlags& f) {
  if (!f.config) return {};
  std::ifstream in(*f.config);
  if (!in) return fail(errc::invalid_config, "cannot read config file " + *f.config);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    return fail(errc::invalid_config, *f.config + ": " + e.what());
  }
  try {
    const auto text = [&](const char* key, std::optional<std::string>& out) {
      if (!out && j.contains(key)) out = j.at(key).get<std::string>();
    };
    const auto number = [&](const char* key, std::optional<std::uint64_t>& out) {
      if (!out && j.contains(key)) out = j.at(key).get<std::uint64_t>();
    };
    text("listen", f.listen);
    text("state_dir", f.state_dir);
    text("base_url", f.base_url);
    text("port_file", f.port_file);
    text("write_token_file", f.write_token_file);
    text("tls_cert", f.tls_cert);
    text("tls_key", f.tls_key);
    number("rescan_interval_s", f.rescan_interval_s);
    number("retention_s", f.retention_s);
    number("list_entries", f.list_entries);
    number("max_connections", f.max_connections);
    if (!f.dumps && j.contains("dumps")) f.dumps = j.at("dumps").get<bool>();
    number("dump_package_size", f.dump_package_size);
    number("dump_delay_s", f.dump_delay_s);
    number("dump_keep", f.dump_keep);
    if (f.collections.empty() && j.contains("collections")) {
      for (const auto& [name, dir] : j.at("collections").items()) {
        f.collections.push_back(name + "=" + dir.get<std::string>());
      }
    }
    if (f.read_token_files.empty() && j.contains("read_token_files")) {
      for (const auto& [name, file] : j.at("read_token_files").items()) {
        f.read_token_files.push_back(name + "=" + file.get<std::string>());
      }
    }
  } catch (const std::exception& e) {
    return fail(errc::invalid_config, *f.config + ": " + e.what());
  }
  return {};
}

Result<std::pair<std::string, std::string>> split_pair(const std::string& text, const char* what) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    return fail(errc::invalid_config, std::string(what) + " '" + text + "' is not NAME=VALUE");
  }
  return std::pair{text.substr(0, eq), text.substr(eq + 1)};
}

int run_serve(ServeFlags f) {
  const auto usage = [](const Error& e) {
    std::fprintf(stderr, "shardsync serve: %s\n", e.detail.c_str());
    return kExitUsage;
  };
  if (auto r = apply_config(f); !r) return usage(r.error());
  if (f.collections.empty()) return usage({{}, "give at least one --collection NAME=DIR"});

  SourceOptions source;
  source.state_dir = f.state_dir.value_or("shardsync-state");
  for (const std::string& spec : f.collections) {
    auto pair = split_pair(spec, "--collection");
    if (!pair) return usage(pair.error());
    if (!is_valid_collection_name(pair->first)) {
      return usage({{}, "collection name '" + pair->first + "' must be [A-Za-z0-9._-]+"});
    }
    std::error_code ec;
    const fs::path dir = fs::canonical(pair->second, ec);
    if (ec || !fs::is_directory(dir)) {
      return usage({{}, "collection " + pair->first + ": " + pair->second + " is not a directory"});
    }
    source.collections.push_back({pair->first, dir.string()});
  }
  if (f.rescan_interval_s) source.rescan_interval = std::chrono::seconds(*f.rescan_interval_s);
  if (f.retention_s) source.retention = std::chrono::seconds(*f.retention_s);
  if (f.rebuild_delay_ms) source.rebuild_delay = std::chrono::milliseconds(*f.rebuild_delay_ms);
  if (f.list_entries) {
    if (*f.list_entries == 0 || *f.list_entries > 50'000) {
      return usage({{}, "--list-entries must be 1..50000"});
    }
    source.list_entries = *f.list_entries;
  }
  source.dumps.enabled = f.dumps.value_or(false);
  if (f.dump_package_size) {
    if (*f.dump_package_size < 4096) return usage({{}, "--dump-package-size must be >= 4096"});
    source.dumps.package_size = *f.dump_package_size;
  }
  if (f.dump_delay_s) source.dumps.delay = std::chrono::seconds(*f.dump_delay_s);
  if (f.dump_keep) {
    if (*f.dump_keep == 0) return usage({{}, "--dump-keep must be >= 1"});
    source.dumps.keep = *f.dump_keep;
  }

  HttpOptions http;
  const std::string listen = f.listen.value_or("127.0.0.1:8080");
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return usage({{}, "--listen must be HOST:PORT"});
  http.host = listen.substr(0, colon);
  if (http.host.size() > 2 && http.host.front() == '[')
    http.host = http.host.substr(1, http.host.size() - 2);
  try {
    const unsigned long port = std::stoul(listen.substr(colon + 1));
    if (port > 65535) throw std::out_of_range("port");
    http.port = static_cast<std::uint16_t>(port);
  } catch (const std::exception&) {
    return usage({{}, "--listen port must be 0..65535"});
  }
  http.port_file = f.port_file.value_or("");
  if (f.max_connections) http.max_connections = *f.max_connections;
  if (f.tls_cert.has_value() != f.tls_key.has_value()) {
    return usage({{}, "--tls-cert and --tls-key go together"});
  }
  http.tls_cert_file = f.tls_cert.value_or("");
  http.tls_key_file = f.tls_key.value_or("");
  if (f.write_token_file) {
    auto token = read_token(*f.write_token_file);
    if (!token) return usage(token.error());
    http.write_token = *token;
  }
  for (const std::string& spec : f.read_token_files) {
    auto pair = split_pair(spec, "--read-token-file");
    if (!pair) return usage(pair.error());
    auto token = read_token(pair->second);
    if (!token) return usage(token.error());
    http.read_tokens[pair->first] = *token;
  }

  Metrics metrics;
  const LogSink log = [](std::string_view level, std::string_view message) {
    log_line("server", level, message);
  };
  std::error_code ec;
  fs::create_directories(source.state_dir, ec);
  if (f.notify) {
    // The notifier reads the log through its own connection, on the Source's thread.
    auto notifier = Notifier::open({source.state_dir});
    if (!notifier) {
      log("error", notifier.error().describe());
      return kExitFailure;
    }
    http.notifier = std::move(*notifier);
    http.push.allowed_callback_hosts = f.push_allow_hosts;
    if (f.max_subscriptions) http.push.max_subscriptions = *f.max_subscriptions;
    if (f.max_event_streams) http.push.max_streams = *f.max_event_streams;
    source.notifications = true;
    source.on_rebuild = [n = http.notifier](const std::shared_ptr<const Site>& next,
                                            const Site* previous) {
      n->site_rebuilt(next, previous);
    };
  }
  auto opened = Source::open(source, metrics, log);
  if (!opened) {
    log("error", opened.error().describe());
    return kExitFailure;
  }
  Source& src = **opened;
  const std::string scheme = http.tls_cert_file.empty() ? "http" : "https";
  std::optional<Error> start_error;
  http.on_listening = [&](std::uint16_t port) {
    std::string base = f.base_url.value_or("");
    if (base.empty()) {
      const bool v6 = http.host.find(':') != std::string::npos;
      base = scheme + "://" + (v6 ? "[" + http.host + "]" : http.host) + ":" +
             std::to_string(port) + "/";
    }
    if (base.back() != '/') base += '/';
    if (auto r = src.start(base); !r) start_error = r.error();
    log("info", "serving " + std::to_string(source.collections.size()) + " collection(s) at " +
                    base + " (Source Description: " + base + ".well-known/resourcesync)");
  };
  if (!http.write_token.empty()) http.publish = src.publish_hooks();
  HttpServer server(
      http, [&src] { return src.site(); }, metrics, log);
  auto ran = server.run();
  src.stop();
  if (start_error) {
    log("error", start_error->describe());
    return kExitFailure;
  }
  if (!ran) {
    log("error", ran.error().describe());
    return kExitFailure;
  }
  log("info", "stopped");
  return kExitOk;
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* serve =
      app.add_subcommand("serve", "Publish directories as ResourceSync resource sets over HTTP(S)");
  serve->add_option("--collection", f->collections, "NAME=DIR, one resource set each (repeatable)");
  serve->add_option("--listen", f->listen,
                    "HOST:PORT to listen on; port 0 picks a free one "
                    "(default 127.0.0.1:8080)");
  serve->add_option("--state-dir", f->state_dir,
                    "where the change log lives (default ./shardsync-state)");
  serve->add_option("--base-url", f->base_url,
                    "public URL of this server, when behind a proxy (default http://HOST:PORT/)");
  serve->add_option("--port-file", f->port_file, "write the bound port here once serving");
  serve->add_option("--config", f->config, "JSON file with the same settings (flags win)");
  serve->add_option("--write-token-file", f->write_token_file, "bearer token for PUT/DELETE");
  serve->add_option("--read-token-file", f->read_token_files,
                    "NAME=FILE: bearer token required to read collection NAME (repeatable)");
  serve->add_option("--tls-cert", f->tls_cert, "PEM certificate chain: serve HTTPS");
  serve->add_option("--tls-key", f->tls_key, "PEM private key for --tls-cert");
  serve->add_option("--rescan-interval", f->rescan_interval_s,
                    "seconds between full rescans (default 300)");
  serve->add_option("--retention", f->retention_s,
                    "seconds of change history to keep (default: all)");
  serve->add_option("--list-entries", f->list_entries,
                    "entries per Resource List part / Change List (default 50000)");
  serve->add_option("--max-connections", f->max_connections, "default 1024");
  serve->add_flag("--notify", f->notify,
                  "push notifications: Change/Framework Notification topics in each Capability "
                  "List, a WebSub hub at BASE.resourcesync/hub and event streams on the topics");
  serve->add_option("--push-allow-host", f->push_allow_hosts,
                    "callback host the hub may connect to (repeatable; '*': any); default: "
                    "only callbacks that resolve to loopback addresses");
  serve->add_option("--max-subscriptions", f->max_subscriptions,
                    "WebSub subscriptions (default 64)");
  serve->add_option("--max-event-streams", f->max_event_streams,
                    "open event streams at once (default 256)");
  serve->add_option("--rebuild-delay-ms", f->rebuild_delay_ms,
                    "how long a burst of file events may settle before the lists are rebuilt "
                    "(default 50)");
  // A callback, not a bool: an absent flag must leave `dumps` unset for the config file.
  serve->add_flag_callback(
      "--dumps", [f] { f->dumps = true; },
      "build Resource Dumps and Change Dumps (ZIP) in the background and publish them with "
      "the archives");
  serve->add_option("--dump-package-size", f->dump_package_size,
                    "bytes per dump package (default 1073741824)");
  serve->add_option("--dump-delay", f->dump_delay_s,
                    "seconds of quiet after the last change before a new Resource Dump "
                    "(default 10)");
  serve->add_option("--dump-keep", f->dump_keep,
                    "Resource Dumps kept and listed in the archive (default 1)");
  serve->footer(
      "Example: shardsync serve --collection ckpt=/data/checkpoints --listen 0.0.0.0:8080\n"
      "Then: shardsync sitemap show http://HOST:8080/.well-known/resourcesync");
  serve->callback([f, &exit_code] { exit_code = run_serve(*f); });
}

}  // namespace shardsync::app
