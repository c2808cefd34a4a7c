#include "bench/loadgen/cpu_accounting.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace fmp::bench {

bool process_cpu_ticks(int pid, std::uint64_t& ticks) {
  const std::string path = pid == 0 ? "/proc/self/stat" : "/proc/" + std::to_string(pid) + "/stat";
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return false;
  // The command name is in parentheses and may hold spaces: fields are counted after the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(line.substr(close + 1));
  std::string field;
  std::uint64_t utime = 0;
  std::uint64_t stime = 0;
  // After ')': field 3 (state) is the first; utime is field 14, stime field 15.
  for (int n = 3; n <= 15; ++n) {
    if (!(fields >> field)) return false;
    if (n == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (n == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  ticks = utime + stime;
  return true;
}

namespace {

void machine_ticks(std::uint64_t& busy, std::uint64_t& steal) {
  busy = 0;
  steal = 0;
  std::ifstream in("/proc/stat");
  std::string name;
  std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, st = 0;
  if (in >> name >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> st &&
      name == "cpu") {
    busy = user + nice + system + irq + softirq;
    steal = st;
  }
}

}  // namespace

CpuSnapshot take_cpu_snapshot(const std::vector<int>& proxy_pids,
                              const std::vector<int>& rig_pids) {
  CpuSnapshot s;
  for (const int pid : proxy_pids) {
    std::uint64_t t = 0;
    if (process_cpu_ticks(pid, t))
      s.proxy_ticks += t;
    else
      s.proxy_ok = false;
  }
  for (const int pid : rig_pids) {
    std::uint64_t t = 0;
    if (process_cpu_ticks(pid, t)) s.rig_ticks += t;
  }
  process_cpu_ticks(0, s.self_ticks);
  machine_ticks(s.machine_busy_ticks, s.machine_steal_ticks);
  return s;
}

CpuUsage cpu_usage_between(const CpuSnapshot& before, const CpuSnapshot& after) {
  CpuUsage u;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  auto secs = [hz](std::uint64_t a, std::uint64_t b) {
    return b >= a ? static_cast<double>(b - a) / hz : 0.0;
  };
  u.proxy_s = secs(before.proxy_ticks, after.proxy_ticks);
  u.rig_s = secs(before.rig_ticks, after.rig_ticks);
  u.self_s = secs(before.self_ticks, after.self_ticks);
  const double busy = secs(before.machine_busy_ticks, after.machine_busy_ticks);
  u.other_s = busy - u.proxy_s - u.rig_s - u.self_s;
  if (u.other_s < 0) u.other_s = 0;  // the clocks are read a few microseconds apart
  u.steal_s = secs(before.machine_steal_ticks, after.machine_steal_ticks);
  u.valid = before.proxy_ok && after.proxy_ok;
  return u;
}

}  // namespace fmp::bench
