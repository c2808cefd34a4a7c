// CPU time of processes and of the whole machine from /proc, so a run can say how much CPU the
// proxy used per request and whether anything else on the machine interfered.
#pragma once

#include <cstdint>
#include <vector>

namespace fmp::bench {

/// One reading of the clocks the report needs, in clock ticks (sysconf(_SC_CLK_TCK)).
struct CpuSnapshot {
  std::uint64_t proxy_ticks = 0;         ///< utime+stime summed over the proxy processes
  std::uint64_t rig_ticks = 0;           ///< the same over the other known processes (upstream)
  std::uint64_t self_ticks = 0;          ///< the load generator itself
  std::uint64_t machine_busy_ticks = 0;  ///< /proc/stat "cpu": user+nice+system+irq+softirq
  std::uint64_t machine_steal_ticks = 0;
  bool proxy_ok = true;  ///< false when a proxy process could not be read (it exited)
};

/// utime+stime of one process in ticks; false when /proc/PID/stat cannot be read or parsed.
bool process_cpu_ticks(int pid, std::uint64_t& ticks);

/// Reads every clock at once (as close together as possible).
CpuSnapshot take_cpu_snapshot(const std::vector<int>& proxy_pids, const std::vector<int>& rig_pids);

/// The difference between two snapshots, in CPU-seconds.
struct CpuUsage {
  double proxy_s = 0;
  double rig_s = 0;
  double self_s = 0;
  double other_s = 0;  ///< machine busy time not explained by proxy, rig or the load generator
  double steal_s = 0;
  bool valid = false;
};

CpuUsage cpu_usage_between(const CpuSnapshot& before, const CpuSnapshot& after);

}  // namespace fmp::bench
