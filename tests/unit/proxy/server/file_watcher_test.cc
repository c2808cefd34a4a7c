// The configuration watcher: which directory events matter (plain files, editor renames,
// Kubernetes `..data` symlink swaps, policy directories), the content digest, and a real inotify
// round trip per way of replacing a file.
#include "proxy/server/file_watcher.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>

namespace fmp::proxy::server {
namespace {

namespace fs = std::filesystem;

/// A fresh directory (resolved: the watcher reports real paths), removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "fmp-watch-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = fs::canonical(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

/// Kubernetes' atomic writer: DIR/..TS/NAME files, DIR/..data -> ..TS, DIR/NAME -> ..data/NAME.
void configmap_version(const TempDir& d, const std::string& ts, const std::string& name,
                       const std::string& text) {
  fs::create_directory(d / ts);
  write(d / (ts + "/" + name), text);
  fs::create_symlink(ts, d / "..data_tmp");
  fs::rename(d / "..data_tmp", d / "..data");  // the atomic swap
  if (!fs::is_symlink(fs::symlink_status(d / name))) fs::create_symlink("..data/" + name, d / name);
}

TEST_CASE("WatchSet: a plain file matches its own name only") {
  TempDir d;
  write(d / "policy.yaml", "default: deny\n");
  const auto set = WatchSet::of({d / "policy.yaml"});
  CHECK(set.directories() == std::vector<std::string>{d.path.string()});
  CHECK(set.matches(d.path.string(), "policy.yaml"));
  CHECK_FALSE(set.matches(d.path.string(), "audit.log"));
  CHECK_FALSE(set.matches(d.path.string(), "policy.yaml.swp"));
  CHECK_FALSE(set.matches("/elsewhere", "policy.yaml"));
}

TEST_CASE("WatchSet: a relative path is taken from the current directory, `..` after a link") {
  TempDir d;
  write(d / "proxy.yaml", "x");
  fs::create_directory(d / "real");
  fs::create_directory(d / "real/certs");
  write(d / "real/ca.pem", "x");
  fs::create_symlink("real/certs", d / "certs");
  const fs::path old = fs::current_path();
  fs::current_path(d.path);
  const auto set = WatchSet::of({"proxy.yaml", "./certs/../ca.pem"});
  fs::current_path(old);
  CHECK(set.matches(d.path.string(), "proxy.yaml"));
  CHECK(set.matches(d.path.string(), "certs"));  // the link
  // `..` is taken from where the link leads, as the kernel does: d/real, not d.
  CHECK(set.matches(d / "real", "ca.pem"));
  CHECK_FALSE(set.matches(d.path.string(), "ca.pem"));
}

TEST_CASE("WatchSet: a missing file is watched for its creation") {
  TempDir d;
  const auto set = WatchSet::of({d / "sub/cert.pem"});
  CHECK(set.matches(d.path.string(), "sub"));
  CHECK_FALSE(set.matches(d.path.string(), "cert.pem"));
}

TEST_CASE("WatchSet: a ConfigMap mount watches the ..data link and the current version") {
  TempDir d;
  configmap_version(d, "..2024_01", "policy.yaml", "default: deny\n");
  const auto set = WatchSet::of({d / "policy.yaml"});
  CHECK(set.matches(d.path.string(), "policy.yaml"));
  CHECK(set.matches(d.path.string(), "..data"));
  CHECK(set.matches(d / "..2024_01", "policy.yaml"));
  CHECK_FALSE(set.matches(d.path.string(), "..data_tmp"));
}

TEST_CASE("WatchSet: a policy directory matches every *.yaml and *.yml, present or future") {
  TempDir d;
  fs::create_directory(d / "policy.d");
  write(d / "policy.d/10-base.yaml", "default: deny\n");
  fs::create_directory(d / "versions");
  write(d / "versions/20-extra.yaml", "rules: []\n");
  fs::create_symlink(d / "versions/20-extra.yaml", d / "policy.d/20-extra.yaml");
  const auto set = WatchSet::of({d / "policy.d"});
  const std::string dir = d / "policy.d";
  CHECK(set.matches(dir, "10-base.yaml"));
  CHECK(set.matches(dir, "30-new.yml"));
  CHECK_FALSE(set.matches(dir, "README.md"));
  CHECK(set.matches(d / "versions", "20-extra.yaml"));  // through the link
  CHECK_FALSE(set.matches(d / "versions", "other.yaml"));
  CHECK(set.matches(d.path.string(), "policy.d"));  // the directory itself replaced
}

TEST_CASE("content_digest follows content, not timestamps") {
  TempDir d;
  write(d / "a.pem", "one");
  const std::string first = content_digest({d / "a.pem"});
  CHECK(first.size() == 64);
  write(d / "a.pem", "one");  // identical rewrite
  CHECK(content_digest({d / "a.pem"}) == first);
  write(d / "a.pem", "two");
  CHECK(content_digest({d / "a.pem"}) != first);
  fs::remove(d / "a.pem");
  const std::string missing = content_digest({d / "a.pem"});
  CHECK(missing != first);
  CHECK(content_digest({d / "a.pem"}) == missing);
}

TEST_CASE("content_digest of a policy directory covers names and contents of *.yaml") {
  TempDir d;
  fs::create_directory(d / "p");
  write(d / "p/a.yaml", "default: deny\n");
  write(d / "p/notes.txt", "x");
  const std::string first = content_digest({d / "p"});
  write(d / "p/notes.txt", "y");  // not a policy file
  CHECK(content_digest({d / "p"}) == first);
  fs::rename(d / "p/a.yaml", d / "p/b.yaml");
  CHECK(content_digest({d / "p"}) != first);
}

/// Counts callbacks; wait_for(n) waits (bounded, 10 s) until at least n arrived.
class Calls {
 public:
  FileWatcher::Callback callback() {
    return [this] {
      std::lock_guard<std::mutex> lock(mu_);
      ++count_;
      cv_.notify_all();
    };
  }
  bool wait_for(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return count_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
};

TEST_CASE("FileWatcher reports an edit in place, a rename over, and a ..data swap") {
  TempDir d;
  Logger log(stderr, LogLevel::kError);
  write(d / "proxy.yaml", "a");
  Calls calls;
  FileWatcher watcher({d / "proxy.yaml"}, std::chrono::milliseconds(20), calls.callback(), log);

  write(d / "proxy.yaml", "b");
  CHECK(calls.wait_for(1));

  write(d / "proxy.yaml.tmp", "c");
  fs::rename(d / "proxy.yaml.tmp", d / "proxy.yaml");
  CHECK(calls.wait_for(2));

  TempDir cm;
  configmap_version(cm, "..v1", "policy.yaml", "default: deny\n");
  watcher.set_paths({cm / "policy.yaml"});
  configmap_version(cm, "..v2", "policy.yaml", "default: allow\n");
  CHECK(calls.wait_for(3));
  // After the swap the watcher follows the new version's directory too.
  write(cm / "..v2/policy.yaml", "default: deny\n");
  CHECK(calls.wait_for(4));
}

}  // namespace
}  // namespace fmp::proxy::server
