#include "run_index.hpp"

#include "shardsync/bridge/bridge.hpp"
#include "shardsync/bridge/protocol.hpp"
#include "shardsync/client/discovery.hpp"

namespace shardsync::bridge::detail {

RunIndex::RunIndex(std::vector<std::string> collections, std::string run_id)
    : collections_(std::move(collections)), run_prefix_(run_prefix(run_id)) {}

namespace {

// The path of an absolute URL ("http://h:1/a/b" -> "/a/b").
std::string_view path_of(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return url;
  const auto slash = url.find('/', scheme + 3);
  return slash == std::string_view::npos ? std::string_view("/") : url.substr(slash);
}

}  // namespace

void RunIndex::absorb(const sitemap::Document& list, std::size_t collection) {
  // Matched by path: a server behind a proxy or cache (`serve --base-url`) lists its files
  // under the public origin, and they are fetched from there.
  const std::string base = std::string(path_of(collections_[collection])) + "/";
  for (const sitemap::Entry& entry : list.entries) {
    const std::string_view loc_path = path_of(entry.loc);
    if (!loc_path.starts_with(base)) continue;
    std::string path(loc_path.substr(base.size()));
    if (!path.starts_with(run_prefix_)) continue;
    if (entry.md && entry.md->change == sitemap::ChangeType::deleted) {
      auto it = entries_.find(path);
      if (it != entries_.end()) it->second.erase(collection);
      continue;
    }
    Listed listed;
    listed.url = entry.loc;
    listed.path = path;
    listed.collection = collection;
    if (entry.md) {
      listed.sha256 = std::string(entry.md->hash.get(sitemap::HashAlgorithm::sha256));
      listed.length = entry.md->length.value_or(0);
    }
    entries_[path][collection] = std::move(listed);
  }
}

Result<void> RunIndex::refresh(Transport& transport) {
  client::DocumentClient& documents = transport.documents();
  std::size_t answered = 0;
  Error last;
  for (std::size_t c = 0; c < collections_.size(); ++c) {
    if (change_lists_.size() < collections_.size()) change_lists_.resize(collections_.size());
    if (change_lists_[c].empty()) {
      auto endpoints = client::discover(documents, collections_[c] + "/", "");
      if (!endpoints || endpoints->change_list_url.empty()) {
        last = endpoints ? Error{bridge_errc::transport, collections_[c] + " has no change list"}
                         : endpoints.error();
        continue;
      }
      change_lists_[c] = endpoints->change_list_url;
    }
    std::vector<std::string> urls = {change_lists_[c]};
    bool reached = false;
    for (std::size_t i = 0; i < urls.size(); ++i) {
      ListState& state = lists_[urls[i]];
      auto got = documents.get_document_if_changed(urls[i], state.etag);
      if (!got) {
        last = got.error();
        break;
      }
      reached = true;
      if (!got->document) continue;  // 304: nothing new in this list
      state.etag = got->etag;
      const sitemap::Document& doc = *got->document;
      if (doc.header.is_index()) {
        // A Change List Index: its lists, closed ones included (each fetched once, then 304).
        for (const sitemap::Entry& child : doc.entries) urls.push_back(child.loc);
        state.etag.clear();  // an index is re-read so that new lists are seen
      } else {
        absorb(doc, c);
      }
    }
    if (reached) ++answered;
  }
  if (answered == 0 && !collections_.empty()) {
    return fail(bridge_errc::transport, "no change list reachable: " + last.describe());
  }
  return {};
}

const Listed* RunIndex::find(const std::string& path, std::size_t preferred) const {
  const auto it = entries_.find(path);
  if (it == entries_.end() || it->second.empty()) return nullptr;
  const auto pick = it->second.find(preferred);
  return pick != it->second.end() ? &pick->second : &it->second.begin()->second;
}

std::vector<Listed> RunIndex::under(const std::string& prefix) const {
  std::vector<Listed> out;
  for (auto it = entries_.lower_bound(prefix); it != entries_.end(); ++it) {
    if (!it->first.starts_with(prefix)) break;
    for (const auto& [c, listed] : it->second) out.push_back(listed);
  }
  return out;
}

}  // namespace shardsync::bridge::detail
