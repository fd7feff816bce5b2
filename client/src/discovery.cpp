#include "shardsync/client/discovery.hpp"

#include <algorithm>
#include <cctype>

#include "shardsync/client/errc.hpp"
#include "shardsync/sitemap/parser.hpp"

namespace shardsync::client {
namespace {

using sitemap::Capability;
using sitemap::DocumentType;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The last path segment of a directory URL ("http://h/a/ckpt/" -> "ckpt").
std::string set_name_of(const std::string& capability_list_url) {
  std::string dir = directory_of(capability_list_url);
  if (!dir.empty()) dir.pop_back();
  const auto slash = dir.rfind('/');
  const std::string name = slash == std::string::npos ? dir : dir.substr(slash + 1);
  return origin_of(dir) == dir ? std::string() : name;  // the origin itself has no name
}

Result<SetEndpoints> from_capability_list(const std::string& url, const sitemap::Document& doc) {
  SetEndpoints set;
  set.capability_list_url = url;
  set.name = set_name_of(url);
  set.base_url = directory_of(url);
  for (const auto& entry : doc.entries) {
    if (!entry.md) continue;
    const std::string loc = resolve_url(url, entry.loc);
    if (origin_of(loc) != origin_of(url)) {
      return fail(errc::outside_source, url + ": document " + loc + " is on another host");
    }
    switch (sitemap::capability_from_name(entry.md->capability)) {
      case Capability::resourcelist:
        set.resource_list_url = loc;
        break;
      case Capability::changelist:
        set.change_list_url = loc;
        break;
      case Capability::resourcedump:
        set.resource_dump_url = loc;
        break;
      case Capability::changedump:
        set.change_dump_url = loc;
        break;
      default:
        break;  // archives, notifications: not used by sync
    }
  }
  if (set.resource_list_url.empty() && set.change_list_url.empty() &&
      set.resource_dump_url.empty()) {
    return fail(errc::discovery_failed, url +
                                            ": the capability list offers no resource list "
                                            "and no change list");
  }
  return set;
}

Result<SetEndpoints> from_source_description(DocumentClient& client, const std::string& url,
                                             const sitemap::Document& doc,
                                             const std::string& source,
                                             const std::string& collection) {
  struct Candidate {
    std::string name, url;
  };
  std::vector<Candidate> sets;
  for (const auto& entry : doc.entries) {
    const std::string loc = resolve_url(url, entry.loc);
    sets.push_back({set_name_of(loc), loc});
  }
  const Candidate* chosen = nullptr;
  if (!collection.empty()) {
    for (const auto& c : sets) {
      if (c.name == collection) chosen = &c;
    }
  } else if (sets.size() == 1) {
    chosen = &sets.front();
  } else {
    // A SOURCE inside one set's directory names that set.
    std::string base = source.ends_with('/') ? source : source + "/";
    for (const auto& c : sets) {
      if (base.starts_with(directory_of(c.url)) && directory_of(c.url) != directory_of(url)) {
        chosen = &c;
      }
    }
  }
  if (!chosen) {
    std::string names;
    for (const auto& c : sets) names += (names.empty() ? "" : ", ") + c.name;
    if (!collection.empty()) {
      return fail(errc::discovery_failed,
                  url + ": no resource set named '" + collection + "' (sets: " + names + ")");
    }
    return fail(errc::ambiguous_source,
                url + " lists " + std::to_string(sets.size()) + " sets: " + names);
  }
  auto list = client.get_document(chosen->url);
  if (!list) return fail(list.error());
  if (list->type() != DocumentType::capability_list) {
    return fail(errc::bad_document, chosen->url + ": expected a Capability List, got a " +
                                        std::string(sitemap::document_type_name(list->type())));
  }
  auto set = from_capability_list(chosen->url, *list);
  if (set && set->name.empty()) set->name = chosen->name;
  return set;
}

// Dispatches on what a fetched document is. `any_list` also accepts lists given directly.
Result<SetEndpoints> from_document(DocumentClient& client, const std::string& url,
                                   const sitemap::Document& doc, const std::string& source,
                                   const std::string& collection) {
  switch (doc.type()) {
    case DocumentType::source_description:
      return from_source_description(client, url, doc, source, collection);
    case DocumentType::capability_list:
      return from_capability_list(url, doc);
    case DocumentType::resource_list:
    case DocumentType::resource_list_index: {
      SetEndpoints set;
      set.base_url = directory_of(url);
      set.resource_list_url = url;
      return set;
    }
    case DocumentType::change_list:
    case DocumentType::change_list_index: {
      SetEndpoints set;
      set.base_url = directory_of(url);
      set.change_list_url = url;
      return set;
    }
    default:
      return fail(errc::bad_document, url + ": a " +
                                          std::string(sitemap::document_type_name(doc.type())) +
                                          " is not something to sync from");
  }
}

// The href of the first `rel="resourcesync"` link in a Link header value.
std::string resourcesync_link(const std::string& header) {
  std::size_t pos = 0;
  while ((pos = header.find('<', pos)) != std::string::npos) {
    const auto close = header.find('>', pos);
    if (close == std::string::npos) break;
    const std::string href = header.substr(pos + 1, close - pos - 1);
    const auto next = header.find('<', close);
    const std::string params = lower(header.substr(close, next - close));
    if (params.find("rel=\"resourcesync\"") != std::string::npos ||
        params.find("rel=resourcesync") != std::string::npos) {
      return href;
    }
    pos = close;
  }
  return {};
}

}  // namespace

std::string origin_of(const std::string& url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return {};
  const std::string scheme = lower(url.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") return {};
  const auto authority_end = url.find_first_of("/?#", scheme_end + 3);
  std::string authority = lower(url.substr(scheme_end + 3, authority_end - scheme_end - 3));
  const std::string default_port = scheme == "http" ? ":80" : ":443";
  if (authority.ends_with(default_port)) authority.resize(authority.size() - default_port.size());
  return scheme + "://" + authority;
}

std::string directory_of(const std::string& url) {
  const auto origin_end =
      url.find('/', url.find("://") == std::string::npos ? 0 : url.find("://") + 3);
  if (origin_end == std::string::npos) return url + "/";
  const auto cut = url.find_first_of("?#", origin_end);
  const std::string path = url.substr(0, cut);
  return path.substr(0, path.rfind('/') + 1);
}

std::string resolve_url(const std::string& base, const std::string& reference) {
  if (reference.find("://") != std::string::npos) {
    const auto colon = reference.find("://");
    const bool scheme_like = std::all_of(
        reference.begin(), reference.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
        });
    if (scheme_like) return reference;
  }
  if (reference.starts_with("//")) return base.substr(0, base.find("://") + 1) + reference;
  if (reference.starts_with('/')) {
    const auto origin_end = base.find('/', base.find("://") + 3);
    return base.substr(0, origin_end) + reference;
  }
  return directory_of(base) + reference;
}

Result<SetEndpoints> discover(DocumentClient& client, const std::string& source,
                              const std::string& collection) {
  if (origin_of(source).empty()) {
    return fail(errc::invalid_options, "SOURCE must be an http(s) URL: " + source);
  }
  std::string tried;
  auto first = client.get(source);
  if (!first) return fail(first.error());
  std::vector<std::string> candidates;
  if (first->status < 400) {
    auto doc = sitemap::parse_document(first->body);
    if (doc && doc->header.has_md) {
      return from_document(client, first->effective_url, *doc, source, collection);
    }
    const std::string link = resourcesync_link(first->link_header);
    if (!link.empty()) candidates.push_back(resolve_url(first->effective_url, link));
  }
  tried = source + " (HTTP " + std::to_string(first->status) + ")";
  const std::string base = source.ends_with('/') ? source : source + "/";
  candidates.push_back(origin_of(source) + "/.well-known/resourcesync");
  candidates.push_back(base + ".well-known/resourcesync");
  candidates.push_back(base + "capabilitylist.xml");
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const std::string& url = candidates[i];
    if (std::find(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(i), url) !=
        candidates.begin() + static_cast<std::ptrdiff_t>(i)) {
      continue;  // the same URL twice (a base at the origin)
    }
    auto doc = client.get_document(url);
    if (doc) {
      const auto type = doc->type();
      if (type == DocumentType::source_description || type == DocumentType::capability_list) {
        return from_document(client, url, *doc, source, collection);
      }
      tried += ", " + url + " (a " + std::string(sitemap::document_type_name(type)) + ")";
      continue;
    }
    if (doc.error().code == errc::transfer_failed) return fail(doc.error());
    tried += ", " + url + " (" + doc.error().detail + ")";
  }
  return fail(errc::discovery_failed,
              "no ResourceSync documents found from " + source + "; tried " + tried);
}

}  // namespace shardsync::client
