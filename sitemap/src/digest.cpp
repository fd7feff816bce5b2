#include "shardsync/sitemap/digest.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "shardsync/sitemap/errc.hpp"

namespace shardsync::sitemap {
namespace {

const EVP_MD* evp_for(HashAlgorithm algorithm) {
  switch (algorithm) {
    case HashAlgorithm::md5:
      return EVP_md5();
    case HashAlgorithm::sha1:
      return EVP_sha1();
    case HashAlgorithm::sha256:
      return EVP_sha256();
  }
  return nullptr;
}

struct ContextDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

}  // namespace

struct Hasher::State {
  std::vector<HashAlgorithm> algorithms;
  std::vector<std::unique_ptr<EVP_MD_CTX, ContextDeleter>> contexts;
};

Hasher::Hasher(std::vector<HashAlgorithm> algorithms) : state_(std::make_unique<State>()) {
  state_->algorithms = std::move(algorithms);
  for (const HashAlgorithm algorithm : state_->algorithms) {
    std::unique_ptr<EVP_MD_CTX, ContextDeleter> ctx(EVP_MD_CTX_new());
    // Failure here means OpenSSL is broken or out of memory: an invariant, not an input error.
    if (!ctx || EVP_DigestInit_ex(ctx.get(), evp_for(algorithm), nullptr) != 1) {
      throw std::runtime_error("OpenSSL digest initialisation failed");
    }
    state_->contexts.push_back(std::move(ctx));
  }
}

Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;

void Hasher::update(std::string_view bytes) {
  for (auto& ctx : state_->contexts) EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size());
}

HashList Hasher::finish() {
  HashList list;
  for (std::size_t i = 0; i < state_->contexts.size(); ++i) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(state_->contexts[i].get(), digest, &size);
    list.set(state_->algorithms[i], to_hex({reinterpret_cast<const char*>(digest), size}));
  }
  state_->contexts.clear();
  return list;
}

Result<HashList> hash_file(const std::string& path, std::vector<HashAlgorithm> algorithms) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errc::io_error, "cannot open " + path + ": " + std::strerror(errno));
  Hasher hasher(std::move(algorithms));
  std::string buffer(1 << 20, '\0');
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int saved = errno;
      ::close(fd);
      return fail(errc::io_error, "reading " + path + ": " + std::strerror(saved));
    }
    if (n == 0) break;
    hasher.update(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
  ::close(fd);
  return hasher.finish();
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(bytes.size() * 2, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    hex[2 * i] = kDigits[b >> 4];
    hex[2 * i + 1] = kDigits[b & 15];
  }
  return hex;
}

}  // namespace shardsync::sitemap
