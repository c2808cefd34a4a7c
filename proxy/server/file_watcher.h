// Live configuration files: inotify on the DIRECTORIES that hold proxy.yaml, the policy and the
// certificate/key/CA/CRL files, so every way a file gets replaced is seen — an edit in place, an
// editor's write-to-temp-then-rename, a Kubernetes ConfigMap/Secret update (an atomic rename of the
// `..data` symlink), a cert-manager or cron rotation. Events are debounced; the watcher only says
// "something changed": the reload itself stays in one place (server.cc), like SIGHUP.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "proxy/log/logger.h"

namespace fmp::proxy::server {

/// The (directory, name) pairs whose changes matter for a set of paths. For each path: every
/// symbolic link met while resolving it (so swapping a link such as `..data` counts) and the file
/// itself; a component that does not exist (yet) is watched for its creation. A path that resolves
/// to a directory (a policy directory) adds its *.yaml / *.yml entries, present and future, each
/// resolved the same way. Relative paths are taken from the current directory, as the proxy does.
class WatchSet {
 public:
  static WatchSet of(const std::vector<std::string>& paths);

  /// Whether an event about `name` inside directory `dir` (as watched: an absolute, resolved path)
  /// may change one of the paths.
  bool matches(const std::string& dir, std::string_view name) const;
  /// Every directory to watch, absolute and resolved.
  std::vector<std::string> directories() const;

 private:
  void add_path(const std::string& path, int depth);
  void add(const std::string& dir, const std::string& name) { names_[dir].insert(name); }

  std::map<std::string, std::set<std::string>> names_;  ///< dir -> file names
  std::set<std::string> policy_dirs_;                   ///< dirs where any *.yaml / *.yml counts
};

/// A digest (hex SHA-256) of what `paths` hold: each file's path and bytes, a directory's *.yaml /
/// *.yml entries by name and content, and the error of a path that cannot be read. Equal digests
/// mean the files did not change, so a watcher event that changed nothing (a `touch`, an identical
/// rewrite by cert-manager) need not reload.
std::string content_digest(const std::vector<std::string>& paths);

/// Watches paths on its own thread and calls `on_change` (on that thread) once per burst of
/// changes, `debounce` after the last event of the burst. The callback must be quick and
/// thread-safe (e.g. queue a reload). Blocks no signal itself: the thread inherits the mask of the
/// thread that constructs it.
class FileWatcher {
 public:
  using Callback = std::function<void()>;

  /// Starts watching. Throws std::system_error when inotify cannot be set up (e.g. the per-user
  /// instance limit); a directory that cannot be watched is logged and retried on the next change.
  FileWatcher(std::vector<std::string> paths, std::chrono::milliseconds debounce,
              Callback on_change, Logger& log);
  /// Stops the thread and closes the inotify descriptor.
  ~FileWatcher();
  FileWatcher(const FileWatcher&) = delete;
  FileWatcher& operator=(const FileWatcher&) = delete;

  /// Replaces the watched paths (e.g. after a reload named other files). Thread-safe. Returns once
  /// the watcher thread watches the new set (at most ~2 s), so a change made after the call is
  /// seen.
  void set_paths(std::vector<std::string> paths);

 private:
  void run();
  void rescan();
  void wake();

  std::chrono::milliseconds debounce_;
  Callback on_change_;
  Logger& log_;
  int inotify_fd_ = -1;
  int wake_fd_ = -1;  ///< eventfd: set_paths() and the destructor wake the thread

  std::mutex mu_;
  std::vector<std::string> paths_;  ///< guarded by mu_
  bool paths_changed_ = false;      ///< guarded by mu_
  bool stopping_ = false;           ///< guarded by mu_
  std::uint64_t requested_ = 0;     ///< guarded by mu_: set_paths() calls made
  std::uint64_t applied_ = 0;       ///< guarded by mu_: set_paths() calls the thread has applied
  std::condition_variable applied_cv_;

  // Watcher thread only.
  WatchSet set_;
  std::map<int, std::vector<std::string>> dirs_by_wd_;
  std::map<std::string, int> wd_by_dir_;
  std::set<std::string> failed_dirs_;  ///< directories already reported as unwatchable

  std::thread thread_;  ///< last: started once everything above is initialised
};

}  // namespace fmp::proxy::server
