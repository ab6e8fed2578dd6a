//! CPU time and peak memory from /proc (Linux).

/// Clock ticks per second in /proc/*/stat (USER_HZ, 100 on every Linux ABI we run on).
pub const TICKS_PER_SECOND: u64 = 100;

/// utime + stime of a process, in ticks.
pub fn process_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_ticks(&stat).map(|(_, ticks)| ticks)
}

/// Sum of utime + stime over this process's threads whose name matches.
pub fn own_threads_cpu_ticks(matches: impl Fn(&str) -> bool) -> Option<u64> {
    threads_cpu_ticks("self", matches)
}

/// Sum of utime + stime over the threads of process `pid` ("self" for this one) whose name
/// matches. A thread that exited takes its time with it, so this counts long-lived threads
/// (a runtime's workers, a database connection's thread) reliably, short-lived ones not.
pub fn threads_cpu_ticks(pid: &str, matches: impl Fn(&str) -> bool) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread exited meanwhile
        };
        if let Some((name, ticks)) = stat_cpu_ticks(&stat)
            && matches(name)
        {
            total = total.saturating_add(ticks);
        }
    }
    Some(total)
}

/// Sum of utime + stime over the machine's processes whose command name matches (those this
/// user can read), or `None` if none does. As with threads, a process that exited takes its
/// time with it: a database server's long-lived backends are counted, a short-lived
/// connection's not.
pub fn processes_cpu_ticks(matches: impl Fn(&str) -> bool) -> Option<u64> {
    let mut found = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // exited meanwhile
        };
        if let Some((name, ticks)) = stat_cpu_ticks(&stat)
            && matches(name)
        {
            found = Some(found.unwrap_or(0u64).saturating_add(ticks));
        }
    }
    found
}

/// (comm, utime + stime) from a /proc stat line. comm is in parentheses and may contain
/// spaces, so fields are counted from the last ')'.
fn stat_cpu_ticks(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open.saturating_add(1)..close)?;
    let mut fields = stat.get(close.saturating_add(1)..)?.split_whitespace();
    // After comm: state(3) ... utime(14) stime(15); `nth(11)` is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime.saturating_add(stime)))
}

/// VmHWM of `/proc/<pid>/status` (`pid` may be "self"), in KiB.
pub fn peak_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "42 (tokio (rt) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0";
        assert_eq!(stat_cpu_ticks(line), Some(("tokio (rt) x", 287)));
    }

    #[test]
    fn own_process_has_cpu_time_and_a_peak_rss() {
        assert!(own_threads_cpu_ticks(|_| true).is_some());
        // Read before the whole process's figure, the threads' sum cannot exceed it.
        let threads = threads_cpu_ticks("self", |_| true).unwrap();
        assert!(threads <= process_cpu_ticks(std::process::id()).unwrap());
        assert_eq!(threads_cpu_ticks("self", |_| false), Some(0));
        assert_eq!(threads_cpu_ticks("no-such-process", |_| true), None);
        assert!(peak_rss_kib("self").unwrap() > 0);
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let me = me.trim_end();
        assert!(processes_cpu_ticks(|name| name == me).is_some());
        assert_eq!(processes_cpu_ticks(|_| false), None);
    }
}
