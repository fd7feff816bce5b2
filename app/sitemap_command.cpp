// shardsync sitemap check|show|build: read, validate, summarise and write ResourceSync
// documents.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string>

#include "build_command.hpp"
#include "commands.hpp"
#include "fetch.hpp"
#include "shardsync/sitemap/errc.hpp"
#include "shardsync/sitemap/parser.hpp"
#include "shardsync/sitemap/validator.hpp"

namespace shardsync::app {
namespace {

using namespace shardsync::sitemap;

// The rule name a parse failure is reported under, e.g. "doctype-refused".
std::string rule_for(const std::error_code& code) {
  if (code.category() != sitemap_category()) return "io-error";
  switch (static_cast<errc>(code.value())) {
    case errc::malformed_xml:
      return "malformed-xml";
    case errc::doctype_refused:
      return "doctype-refused";
    case errc::limit_exceeded:
      return "limit-exceeded";
    case errc::invalid_utf8:
      return "invalid-utf8";
    case errc::unsupported_encoding:
      return "unsupported-encoding";
    case errc::not_a_sitemap:
      return "not-a-sitemap";
    case errc::multiple_roots:
      return "multiple-roots";
    case errc::duplicate_attribute:
      return "duplicate-attribute";
    case errc::invalid_value:
      return "invalid-value";
    case errc::structure:
      return "structure";
    case errc::truncated:
      return "truncated";
    case errc::decompression_failed:
      return "decompression-failed";
    case errc::io_error:
      return "io-error";
  }
  return "parse";
}

// Parse errors read "line N: message"; split that so they print like findings.
Finding finding_from_error(const Error& error) {
  Finding finding{Severity::error, 0, rule_for(error.code), error.detail};
  const std::string& d = error.detail;
  if (d.starts_with("line ")) {
    const auto colon = d.find(": ");
    if (colon != std::string::npos) {
      try {
        finding.line = static_cast<std::uint32_t>(std::stoul(d.substr(5, colon - 5)));
        finding.message = d.substr(colon + 2);
      } catch (const std::exception&) {
      }
    }
  }
  return finding;
}

// Holds a document's bytes when it came over HTTP, so the source can point into them.
struct Input {
  std::string body;
  std::unique_ptr<ByteSource> source;
};

Result<Input> open_input(const std::string& target, const ParseOptions& options) {
  Input input;
  if (is_url(target)) {
    auto body = fetch_url(target, options.limits.max_document_bytes);
    if (!body) return fail(body.error());
    input.body = std::move(*body);
    input.source = memory_source(input.body);
    return input;
  }
  auto source = file_source(target);
  if (!source) return fail(source.error());
  input.source = std::move(*source);
  return input;
}

int run_check(const std::string& target, bool strict) {
  const ParseOptions options;
  auto input = open_input(target, options);
  if (!input) {
    std::fprintf(stderr, "shardsync: %s\n", input.error().detail.c_str());
    return kExitFailure;
  }
  Validator validator;
  auto stats = parse_stream(*input->source, validator, options);
  if (stats) validator.finish(*stats);

  std::vector<Finding> findings = validator.findings();
  if (!stats) findings.push_back(finding_from_error(stats.error()));
  std::size_t errors = 0, warnings = 0;
  for (Finding& f : findings) {
    if (strict) f.severity = Severity::error;
    (f.severity == Severity::error ? errors : warnings) += 1;
    std::printf("%s\n", f.format().c_str());
  }
  std::printf("%s: %s%s, %llu entries: %zu error%s, %zu warning%s\n", target.c_str(),
              stats ? "" : "unreadable ", stats ? "checked" : "document",
              static_cast<unsigned long long>(stats ? stats->entries : 0), errors,
              errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
  return errors == 0 ? kExitOk : kExitFailure;
}

// Gathers what `sitemap show` prints, streaming.
class Summary final : public ParseHandler {
 public:
  void on_header(const DocumentHeader& header) override { header_ = header; }
  void on_entry(Entry&& entry) override {
    ++entries_;
    const auto time = entry.md && entry.md->datetime ? entry.md->datetime : entry.lastmod;
    if (time) {
      earliest_ = earliest_ ? std::min(*earliest_, *time) : *time;
      latest_ = latest_ ? std::max(*latest_, *time) : *time;
    }
    if (entry.md) {
      if (entry.md->change) ++changes_[std::string(change_type_name(*entry.md->change))];
      if (entry.md->length) {
        bytes_ += *entry.md->length;
        ++with_length_;
      }
      if (!entry.md->hash.empty()) ++with_hash_;
      if (!entry.md->capability.empty())
        capabilities_.push_back(entry.md->capability + " " + entry.loc);
    }
    if (samples_.size() < 3) samples_.push_back(entry.loc);
  }

  void print(const std::string& target, const ParseStats& stats) const {
    const auto time = [](const std::optional<Timestamp>& t) {
      return t ? format_w3c_datetime(*t) : std::string("-");
    };
    std::printf("document:   %s\n", target.c_str());
    std::printf("type:       %s (%s, <%s>)\n",
                std::string(document_type_name(document_type(header_))).c_str(),
                header_.has_md ? header_.md.capability.c_str() : "no rs:md",
                header_.is_index() ? "sitemapindex" : "urlset");
    if (header_.md.at) std::printf("at:         %s\n", time(header_.md.at).c_str());
    if (header_.md.completed) std::printf("completed:  %s\n", time(header_.md.completed).c_str());
    if (header_.md.from) std::printf("from:       %s\n", time(header_.md.from).c_str());
    if (is_change_capability(header_.capability()) || header_.md.until) {
      std::printf("until:      %s\n", header_.md.until ? time(header_.md.until).c_str() : "(open)");
    }
    for (const Link& link : header_.links) {
      std::printf("link:       %s -> %s\n", link.rel.c_str(), link.href.c_str());
    }
    std::printf("entries:    %llu\n", static_cast<unsigned long long>(entries_));
    if (earliest_) {
      std::printf("time range: %s .. %s\n", time(earliest_).c_str(), time(latest_).c_str());
    }
    if (!changes_.empty()) {
      std::string text;
      for (const auto& [change, count] : changes_) {
        text += (text.empty() ? "" : ", ") + change + " " + std::to_string(count);
      }
      std::printf("changes:    %s\n", text.c_str());
    }
    if (with_length_) {
      std::printf("length:     %llu bytes in %llu entries\n",
                  static_cast<unsigned long long>(bytes_),
                  static_cast<unsigned long long>(with_length_));
    }
    if (entries_) {
      std::printf("hashed:     %llu of %llu entries\n", static_cast<unsigned long long>(with_hash_),
                  static_cast<unsigned long long>(entries_));
    }
    for (const std::string& c : capabilities_) std::printf("capability: %s\n", c.c_str());
    if (capabilities_.empty()) {
      for (const std::string& loc : samples_) std::printf("sample:     %s\n", loc.c_str());
    }
    std::printf("size:       %llu bytes%s, %u lines\n",
                static_cast<unsigned long long>(stats.bytes), stats.gzip ? " (gzip)" : "",
                stats.lines);
  }

 private:
  DocumentHeader header_;
  std::uint64_t entries_ = 0, bytes_ = 0, with_length_ = 0, with_hash_ = 0;
  std::optional<Timestamp> earliest_, latest_;
  std::map<std::string, std::uint64_t> changes_;
  std::vector<std::string> capabilities_;
  std::vector<std::string> samples_;
};

int run_show(const std::string& target) {
  const ParseOptions options;
  auto input = open_input(target, options);
  if (!input) {
    std::fprintf(stderr, "shardsync: %s\n", input.error().detail.c_str());
    return kExitFailure;
  }
  Summary summary;
  auto stats = parse_stream(*input->source, summary, options);
  if (!stats) {
    std::fprintf(stderr, "shardsync: %s: %s\n", target.c_str(), stats.error().describe().c_str());
    return kExitFailure;
  }
  summary.print(target, *stats);
  return kExitOk;
}

}  // namespace

void add_sitemap_command(CLI::App& app, int& exit_code) {
  CLI::App* sitemap = app.add_subcommand("sitemap", "Read, check and write ResourceSync documents");
  sitemap->require_subcommand(1);

  auto target = std::make_shared<std::string>();
  auto strict = std::make_shared<bool>(false);
  CLI::App* check = sitemap->add_subcommand(
      "check", "Parse and validate a document; one line per finding, exit 1 on errors");
  check->add_option("document", *target, "file or http(s) URL")->required();
  check->add_flag("--strict", *strict, "treat warnings as errors");
  check->footer("Example: shardsync sitemap check resourcelist.xml --strict");
  check->callback([target, strict, &exit_code] { exit_code = run_check(*target, *strict); });

  auto show_target = std::make_shared<std::string>();
  CLI::App* show = sitemap->add_subcommand("show", "Summarise a document");
  show->add_option("document", *show_target, "file or http(s) URL")->required();
  show->footer("Example: shardsync sitemap show https://example.org/.well-known/resourcesync");
  show->callback([show_target, &exit_code] { exit_code = run_show(*show_target); });

  add_build_command(*sitemap, exit_code);
}

}  // namespace shardsync::app
