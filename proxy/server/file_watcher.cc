// inotify on the directories of the watched files; see file_watcher.h for the contract.
#include "proxy/server/file_watcher.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace fmp::proxy::server {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxSymlinkHops = 40;  // as the kernel's MAXSYMLINKS
constexpr std::uint32_t kDirEvents = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                     IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF |
                                     IN_MOVE_SELF | IN_ONLYDIR;

bool is_policy_file_name(std::string_view name) {
  return name.ends_with(".yaml") || name.ends_with(".yml");
}

std::deque<std::string> split(const std::string& path) {
  std::deque<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    const std::size_t j = path.find('/', i);
    const std::size_t end = j == std::string::npos ? path.size() : j;
    if (end > i) out.emplace_back(path.substr(i, end - i));
    i = end + 1;
  }
  return out;
}

std::string join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string parent(const std::string& dir) {
  const std::size_t slash = dir.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : dir.substr(0, slash);
}

std::string read_link(const std::string& path) {
  std::string buf(256, '\0');
  for (;;) {
    const ssize_t n = readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) return {};
    if (static_cast<std::size_t>(n) < buf.size()) return buf.substr(0, static_cast<std::size_t>(n));
    buf.resize(buf.size() * 2);
  }
}

std::string current_dir() {
  std::error_code ec;
  const fs::path p = fs::current_path(ec);
  return ec ? std::string("/") : p.string();
}

/// The *.yaml / *.yml names of a directory, sorted (the policy loader's order).
std::vector<std::string> policy_file_names(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (is_policy_file_name(name)) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

void append_file(std::string& out, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    out += "error:" + std::string(std::strerror(errno));
    return;
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  std::string s = bytes.str();
  out += std::to_string(s.size()) + ':';
  out += s;
  OPENSSL_cleanse(s.data(), s.size());  // may be a private key
}

}  // namespace

// --- WatchSet ------------------------------------------------------------------------------------

WatchSet WatchSet::of(const std::vector<std::string>& paths) {
  WatchSet set;
  for (const auto& p : paths) set.add_path(p, 0);
  return set;
}

void WatchSet::add_path(const std::string& path, int depth) {
  if (path.empty()) return;
  std::deque<std::string> rest = split(path[0] == '/' ? path : join(current_dir(), path));
  std::string resolved = "/";  // always a real path: every symlink before it is resolved
  int hops = 0;
  while (!rest.empty()) {
    const std::string name = rest.front();
    rest.pop_front();
    if (name == ".") continue;
    if (name == "..") {
      resolved = parent(resolved);
      continue;
    }
    const std::string next = join(resolved, name);
    struct stat st {};
    if (lstat(next.c_str(), &st) != 0) {
      add(resolved, name);  // missing: its creation is the change to wait for
      return;
    }
    if (S_ISLNK(st.st_mode)) {
      add(resolved, name);  // the link may be swapped (Kubernetes `..data`, certbot's live/)
      const std::string target = read_link(next);
      if (target.empty() || ++hops > kMaxSymlinkHops) return;
      const std::deque<std::string> parts = split(target);
      rest.insert(rest.begin(), parts.begin(), parts.end());
      if (target[0] == '/') resolved = "/";
      continue;
    }
    if (rest.empty()) {
      add(resolved, name);
      if (S_ISDIR(st.st_mode) && depth == 0) {
        policy_dirs_.insert(next);
        for (const auto& entry : policy_file_names(next)) add_path(join(next, entry), depth + 1);
      }
      return;
    }
    resolved = next;
  }
}

bool WatchSet::matches(const std::string& dir, std::string_view name) const {
  if (policy_dirs_.count(dir) && is_policy_file_name(name)) return true;
  const auto it = names_.find(dir);
  return it != names_.end() && it->second.count(std::string(name)) > 0;
}

std::vector<std::string> WatchSet::directories() const {
  std::set<std::string> dirs(policy_dirs_.begin(), policy_dirs_.end());
  for (const auto& [dir, names] : names_) dirs.insert(dir);
  return {dirs.begin(), dirs.end()};
}

// --- content_digest ------------------------------------------------------------------------------

std::string content_digest(const std::vector<std::string>& paths) {
  std::string all;
  for (const auto& path : paths) {
    all += "path:" + path + '\0';
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      for (const auto& name : policy_file_names(path)) {
        all += "entry:" + name + '\0';
        append_file(all, join(path, name));
      }
    } else {
      append_file(all, path);
    }
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  std::size_t md_len = 0;
  const bool ok =
      EVP_Q_digest(nullptr, "SHA256", nullptr, all.data(), all.size(), md, &md_len) == 1;
  OPENSSL_cleanse(all.data(), all.size());
  if (!ok) return {};  // never equal to a real digest's hex: the caller reloads
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (std::size_t i = 0; i < md_len; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 0xf];
  }
  return hex;
}

// --- FileWatcher ---------------------------------------------------------------------------------

FileWatcher::FileWatcher(std::vector<std::string> paths, std::chrono::milliseconds debounce,
                         Callback on_change, Logger& log)
    : debounce_(debounce), on_change_(std::move(on_change)), log_(log), paths_(std::move(paths)) {
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) throw std::system_error(errno, std::generic_category(), "inotify_init1");
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    const int err = errno;
    close(inotify_fd_);
    throw std::system_error(err, std::generic_category(), "eventfd");
  }
  try {
    rescan();  // watching before the constructor returns: no change after it is missed
    thread_ = std::thread([this] { run(); });
  } catch (...) {
    close(wake_fd_);
    close(inotify_fd_);
    throw;
  }
}

FileWatcher::~FileWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake();
  if (thread_.joinable()) thread_.join();
  close(wake_fd_);
  close(inotify_fd_);  // removes every watch
}

void FileWatcher::set_paths(std::vector<std::string> paths) {
  std::uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (paths == paths_) return;
    paths_ = std::move(paths);
    paths_changed_ = true;
    ticket = ++requested_;
  }
  wake();
  std::unique_lock<std::mutex> lock(mu_);
  applied_cv_.wait_for(lock, std::chrono::seconds(2),
                       [&] { return applied_ >= ticket || stopping_; });
}

void FileWatcher::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = write(wake_fd_, &one, sizeof one);
}

void FileWatcher::rescan() {
  std::vector<std::string> paths;
  std::uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    paths = paths_;
    paths_changed_ = false;
    ticket = requested_;
  }
  // Whatever happens below, set_paths() callers waiting for this set are released at the end.
  struct Release {
    FileWatcher* w;
    std::uint64_t ticket;
    ~Release() {
      {
        std::lock_guard<std::mutex> lock(w->mu_);
        w->applied_ = std::max(w->applied_, ticket);
      }
      w->applied_cv_.notify_all();
    }
  } release{this, ticket};
  set_ = WatchSet::of(paths);
  const std::vector<std::string> dirs = set_.directories();
  const std::set<std::string> wanted(dirs.begin(), dirs.end());
  for (auto it = wd_by_dir_.begin(); it != wd_by_dir_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    auto& shared = dirs_by_wd_[it->second];  // one inode reached by two paths shares one wd
    shared.erase(std::remove(shared.begin(), shared.end(), it->first), shared.end());
    if (shared.empty()) {
      inotify_rm_watch(inotify_fd_, it->second);
      dirs_by_wd_.erase(it->second);
    }
    it = wd_by_dir_.erase(it);
  }
  for (const auto& dir : dirs) {
    if (wd_by_dir_.count(dir)) continue;
    const int wd = inotify_add_watch(inotify_fd_, dir.c_str(), kDirEvents);
    if (wd < 0) {
      if (failed_dirs_.insert(dir).second)
        log_.warn("cannot watch a configuration directory; changes there need SIGHUP",
                  {{"dir", dir}, {"error", std::strerror(errno)}});
      continue;
    }
    failed_dirs_.erase(dir);
    wd_by_dir_[dir] = wd;
    dirs_by_wd_[wd].push_back(dir);
  }
}

void FileWatcher::run() {
  using Clock = std::chrono::steady_clock;
  bool pending = false;
  Clock::time_point deadline;
  alignas(inotify_event) char buf[16 * 1024];
  for (;;) {
    int timeout_ms = -1;
    if (pending) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      timeout_ms = static_cast<int>(std::max<long long>(0, left.count()));
    }
    pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (poll(fds, 2, timeout_ms) < 0) {
      if (errno == EINTR) continue;
      log_.error("configuration watcher stopped; changes need SIGHUP",
                 {{"error", std::strerror(errno)}});
      return;
    }
    if (fds[1].revents & POLLIN) {
      std::uint64_t count = 0;
      [[maybe_unused]] const ssize_t n = read(wake_fd_, &count, sizeof count);
      bool changed = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
        changed = paths_changed_;
      }
      if (changed) rescan();
    }
    bool relevant = false;
    if (fds[0].revents & POLLIN) {
      for (;;) {
        const ssize_t len = read(inotify_fd_, buf, sizeof buf);
        if (len <= 0) break;  // EAGAIN: drained
        for (ssize_t off = 0; off + static_cast<ssize_t>(sizeof(inotify_event)) <= len;) {
          inotify_event ev{};
          std::memcpy(&ev, buf + off, sizeof ev);
          const char* name = buf + off + sizeof ev;
          off += static_cast<ssize_t>(sizeof ev + ev.len);
          if (ev.mask & IN_Q_OVERFLOW) {
            relevant = true;  // events were lost: assume the worst
          } else if (ev.mask & IN_IGNORED) {
            // The directory is gone (or was unwatched by rescan): forget the descriptor; the
            // rescan after the debounce watches whatever replaced it.
            if (auto it = dirs_by_wd_.find(ev.wd); it != dirs_by_wd_.end()) {
              for (const auto& dir : it->second) wd_by_dir_.erase(dir);
              dirs_by_wd_.erase(it);
              relevant = true;
            }
          } else if (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
            relevant = relevant || dirs_by_wd_.count(ev.wd) > 0;
          } else if (ev.len > 0) {
            const std::string_view n(name, strnlen(name, ev.len));
            if (auto it = dirs_by_wd_.find(ev.wd); it != dirs_by_wd_.end())
              for (const auto& dir : it->second) relevant = relevant || set_.matches(dir, n);
          }
        }
      }
    }
    if (relevant) {
      pending = true;
      deadline = Clock::now() + debounce_;  // a burst (truncate, write, close) is one change
    }
    if (pending && Clock::now() >= deadline) {
      pending = false;
      rescan();  // links may point elsewhere now: watch the new targets before the reload reads
      on_change_();
    }
  }
}

}  // namespace fmp::proxy::server
