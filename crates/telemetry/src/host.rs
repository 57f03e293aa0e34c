//! What the machine and this process use, read through `sysinfo`: the machine's vCPUs and RAM
//! (for the start-up warning when SERVER_MAX_CPU / SERVER_MAX_RAM promise more than there is),
//! this process's RSS and CPU time, and the host's load average (for the status block and
//! /metrics). One `System` per process, refreshed only for what is read.

use std::sync::{LazyLock, Mutex};

use registre_config::ServerConfig;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// The machine as the capacity budget should see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    pub vcpus: usize,
    /// Bytes; the cgroup's memory limit when one is set below the host's RAM (a container).
    pub ram_bytes: u64,
}

/// This process and the host, at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub rss_bytes: u64,
    /// CPU time (user + system) since the process started.
    pub cpu_seconds: f64,
    /// CPU use since the previous reading, in % of one vCPU (200 = two vCPUs busy).
    pub cpu_percent: f32,
    /// Host load average over 1, 5 and 15 minutes.
    pub load: [f64; 3],
}

struct Probe {
    system: System,
    pid: Option<Pid>,
}

static PROBE: LazyLock<Mutex<Probe>> =
    LazyLock::new(|| Mutex::new(Probe { system: System::new(), pid: sysinfo::get_current_pid().ok() }));

fn with_probe<T>(read: impl FnOnce(&mut Probe) -> T) -> T {
    // A panic while holding the lock leaves a System that is still fine to read.
    let mut probe = PROBE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    read(&mut probe)
}

/// The machine's vCPUs and RAM.
pub fn machine() -> Machine {
    with_probe(|p| {
        p.system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
        p.system.refresh_memory();
        let host_ram = p.system.total_memory();
        let ram_bytes = match p.system.cgroup_limits() {
            Some(limits) if limits.total_memory > 0 && limits.total_memory < host_ram => limits.total_memory,
            _ => host_ram,
        };
        Machine { vcpus: p.system.cpus().len().max(1), ram_bytes }
    })
}

/// This process's RSS and CPU, and the host's load.
pub fn usage() -> Usage {
    let load = System::load_average();
    let load = [load.one, load.five, load.fifteen];
    with_probe(|p| {
        let Some(pid) = p.pid else {
            return Usage { rss_bytes: 0, cpu_seconds: 0.0, cpu_percent: 0.0, load };
        };
        p.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        match p.system.process(pid) {
            Some(process) => Usage {
                rss_bytes: process.memory(),
                cpu_seconds: process.accumulated_cpu_time() as f64 / 1000.0,
                cpu_percent: process.cpu_usage(),
                load,
            },
            None => Usage { rss_bytes: 0, cpu_seconds: 0.0, cpu_percent: 0.0, load },
        }
    })
}

/// The start-up warnings when the configured budget exceeds `machine`, e.g.
/// `SERVER_MAX_CPU=8 but this machine has 2 vCPUs: leases will promise CPU that is not there`.
pub fn budget_warnings(server: &ServerConfig, machine: Machine) -> Vec<String> {
    let mut warnings = Vec::new();
    if server.max_cpu.as_f64() > machine.vcpus as f64 {
        warnings.push(format!(
            "SERVER_MAX_CPU={} but this machine has {} vCPUs: leases will promise CPU that is not there (lower SERVER_MAX_CPU)",
            server.max_cpu, machine.vcpus
        ));
    }
    let ram_gb = machine.ram_bytes as f64 / 1e9;
    if server.max_ram.as_f64() > ram_gb {
        warnings.push(format!(
            "SERVER_MAX_RAM={} but this machine has {ram_gb:.1} GB of RAM: leases will promise memory that is not there (lower SERVER_MAX_RAM)",
            server.max_ram
        ));
    }
    warnings
}

/// The status block's line: `Process: RSS 84.2 MB · CPU 12.3 s (35% now) · host load 1.20 0.85 0.40`.
pub fn status_line(usage: &Usage) -> String {
    format!(
        "   Process: RSS {:.1} MB · CPU {:.1} s ({:.0}% now) · host load {:.2} {:.2} {:.2}",
        usage.rss_bytes as f64 / 1e6,
        usage.cpu_seconds,
        usage.cpu_percent,
        usage.load[0],
        usage.load[1],
        usage.load[2]
    )
}

#[cfg(test)]
mod tests {
    use registre_config::Milli;

    use super::*;

    fn server(cpu: f64, ram: f64) -> ServerConfig {
        ServerConfig {
            id: None,
            max_cpu: Milli::from_f64(cpu).unwrap(),
            max_ram: Milli::from_f64(ram).unwrap(),
            reserve_cpu_percent: 20.0,
            reserve_ram_percent: 20.0,
        }
    }

    #[test]
    fn warns_only_for_what_exceeds_the_machine() {
        let two_cpus = Machine { vcpus: 2, ram_bytes: 4_000_000_000 };
        assert_eq!(
            budget_warnings(&server(8.0, 2.0), two_cpus),
            ["SERVER_MAX_CPU=8 but this machine has 2 vCPUs: leases will promise CPU that is not there (lower SERVER_MAX_CPU)"]
        );
        assert_eq!(
            budget_warnings(&server(2.0, 16.0), two_cpus),
            ["SERVER_MAX_RAM=16 but this machine has 4.0 GB of RAM: leases will promise memory that is not there (lower SERVER_MAX_RAM)"]
        );
        assert_eq!(budget_warnings(&server(8.0, 16.0), two_cpus).len(), 2);
        assert!(budget_warnings(&server(2.0, 4.0), two_cpus).is_empty());
        assert!(budget_warnings(&server(1.5, 0.5), two_cpus).is_empty());
    }

    #[test]
    fn this_machine_and_this_process_are_read() {
        let m = machine();
        assert!(m.vcpus >= 1 && m.ram_bytes > 100_000_000, "{m:?}");
        // Touch 64 MB so the RSS is surely above it; burn CPU until some is counted.
        let block = vec![1u8; 64 << 20];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut x = 0u64;
        let u = loop {
            for (i, b) in block.iter().enumerate().step_by(4096) {
                x = x.wrapping_add(*b as u64 * i as u64);
            }
            let u = usage();
            if u.cpu_seconds > 0.0 || std::time::Instant::now() > deadline {
                break u;
            }
        };
        assert!(x > 0);
        assert!(u.rss_bytes > 64 << 20, "{u:?}");
        assert!(u.cpu_seconds > 0.0, "{u:?}");
        assert!(u.load.iter().all(|l| *l >= 0.0), "{u:?}");
        let line = status_line(&u);
        assert!(line.starts_with("   Process: RSS ") && line.contains(" · host load "), "{line}");
        drop(block);
    }
}
