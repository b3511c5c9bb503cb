//! Intra-op threads that yield to a busy CPU.
//!
//! libtorch's OpenMP threads spin while they wait for work, which is what
//! makes small kernels fast on a quiet machine. When another process
//! competes for the cores, a spinning thread takes the CPU from the thread
//! that holds the work: on 2 cores with one competing busy process, a `fast`
//! trial took about 3x its quiet time with 2 threads and 1.7x with one
//! (README, Measurements). OpenMP's passive wait policy avoids the spinning
//! but costs a third of the quiet speed, and is fixed when the library loads.
//!
//! So the training loop watches two counters the kernel keeps and changes
//! the thread count as the CPU is shared:
//! - with several threads, the time this process's threads spent runnable
//!   but waiting for a core (`/proc/self/task/*/schedstat`, run delay): over
//!   a quarter of the threads' wall time means other processes want the
//!   cores, and training goes on with one thread;
//! - with one thread, the idle time of the CPUs this process may run on
//!   (`/proc/stat`): free cores for the other threads bring them back. A
//!   core that is busy again at once makes the next try wait twice as long
//!   (up to a minute), so a steady neighbour costs little.
//!
//! - at a trial's start, the CPU time other processes took since the last
//!   reading (the process's start, or the previous trial's end): if they
//!   left fewer cores than the raise needs, the trial starts on one thread
//!   instead of spending its first window on contended ones.
//!
//! The thread count changes between steps, on the training thread (OpenMP's
//! setting is per thread); results can then differ in the last bits from a
//! run at a fixed count, which `--fixed-threads` keeps. Without the kernel's
//! counters (no `/proc`), nothing changes.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often the counters are read.
const WINDOW: Duration = Duration::from_secs(1);
/// Fraction of the threads' wall time spent waiting for a core that means
/// the CPU is contended.
const CONTENDED: f64 = 0.25;
/// Idle cores (for each thread to bring back) that mean the CPU is free.
const FREE: f64 = 0.75;
/// First and longest wait before trying more threads again.
const FIRST_HOLD: Duration = Duration::from_secs(2);
const LONGEST_HOLD: Duration = Duration::from_secs(64);
/// More threads that stay this long reset the wait to its first length.
const SETTLED: Duration = Duration::from_secs(30);

/// Shortest and longest interval a trial's start judges the CPU by: a
/// reading older than that (a daemon idle between studies) says little
/// about now, and the running checks decide instead.
const START_WINDOW: Duration = Duration::from_millis(250);
const START_HORIZON: Duration = Duration::from_secs(10);

thread_local! {
    /// This thread's configured count, and whether it may change.
    static PLAN: Cell<(i32, bool)> = const { Cell::new((1, false)) };
    /// The counters when configured or when the last trial ended.
    static SEEN: Cell<Option<Sample>> = const { Cell::new(None) };
}

/// The training thread's intra-op thread count as last set here (0:
/// never), for the live page: libtorch's own count is per thread.
static TRAINING_THREADS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The training thread's intra-op thread count (0 before one was set).
pub fn training_threads() -> i32 {
    TRAINING_THREADS.load(std::sync::atomic::Ordering::Relaxed)
}

fn set_threads(threads: i32) {
    tch::set_num_threads(threads);
    TRAINING_THREADS.store(threads, std::sync::atomic::Ordering::Relaxed);
}

/// Sets this thread's intra-op thread count, and whether training may lower
/// it while the CPU is contended (`adaptive`).
pub fn configure(threads: i32, adaptive: bool) {
    set_threads(threads);
    PLAN.with(|p| p.set((threads, adaptive)));
    SEEN.with(|s| s.set(Sample::read()));
}

/// The kernel's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Instant,
    /// Nanoseconds this process's threads have been runnable but waiting.
    pub run_delay_ns: u64,
    /// Idle and total time of the CPUs this process may use (clock ticks).
    pub idle_ticks: u64,
    pub total_ticks: u64,
    /// How many CPUs those are.
    pub cpus: u32,
    /// CPU time of this process (user and system, clock ticks).
    pub own_ticks: u64,
}

impl Sample {
    /// Reads the counters; `None` without `/proc`.
    pub fn read() -> Option<Sample> {
        let (idle_ticks, total_ticks, cpus) = cpu_ticks(&allowed_cpus()?)?;
        Some(Sample {
            at: Instant::now(),
            run_delay_ns: run_delay_ns()?,
            idle_ticks,
            total_ticks,
            cpus,
            own_ticks: own_ticks()?,
        })
    }

    /// Cores that processes other than this one kept busy from `earlier`
    /// to this sample (`None` outside `START_WINDOW..=START_HORIZON`).
    pub fn others_busy_since(&self, earlier: &Sample) -> Option<f64> {
        let wall = self.at.saturating_duration_since(earlier.at);
        let ticks = self.total_ticks.saturating_sub(earlier.total_ticks);
        if !(START_WINDOW..=START_HORIZON).contains(&wall) || ticks == 0 {
            return None;
        }
        let idle = self.idle_ticks.saturating_sub(earlier.idle_ticks);
        let own = self.own_ticks.saturating_sub(earlier.own_ticks);
        let others = ticks.saturating_sub(idle).saturating_sub(own);
        Some(others as f64 / ticks as f64 * f64::from(self.cpus))
    }
}

/// User and system time of this process (`/proc/self/stat` fields 14, 15).
fn own_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_own_ticks(&text)
}

fn parse_own_ticks(text: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces: count from its closing ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Sum of the run delay (second field of `schedstat`) of every thread.
fn run_delay_ns() -> Option<u64> {
    let mut sum = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread that ended meanwhile has no file: it no longer counts.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        sum += text.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(sum)
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: `set` is a plain bit mask the call fills in; its size is passed.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE, the mask's size.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect();
    (!cpus.is_empty()).then_some(cpus)
}

/// Idle (idle + iowait) and total ticks of `cpus` from `/proc/stat`.
fn cpu_ticks(cpus: &[usize]) -> Option<(u64, u64, u32)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_ticks(&text, cpus)
}

fn parse_cpu_ticks(text: &str, cpus: &[usize]) -> Option<(u64, u64, u32)> {
    let (mut idle, mut total, mut n) = (0u64, 0u64, 0u32);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields.next().and_then(|f| f.strip_prefix("cpu")) else {
            continue;
        };
        let Ok(index) = cpu.parse::<usize>() else {
            continue; // the "cpu" line sums every CPU
        };
        if !cpus.contains(&index) {
            continue;
        }
        // user nice system idle iowait irq softirq steal (guest is in user).
        let v: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
        if v.len() < 5 {
            return None;
        }
        idle += v[3] + v[4];
        total += v.iter().sum::<u64>();
        n += 1;
    }
    (n > 0).then_some((idle, total, n))
}

/// Chooses the thread count from successive samples.
#[derive(Debug)]
pub struct Governor {
    max: i32,
    current: i32,
    last: Sample,
    /// No more threads before this.
    next_try: Instant,
    hold: Duration,
    /// When more threads last came back.
    raised_at: Option<Instant>,
}

/// A change of the thread count, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// The threads waited for a core this fraction of their time.
    Lower { waited: f64 },
    /// This many cores were idle.
    Raise { idle_cores: f64 },
    /// Other processes kept this many cores busy before the trial started.
    StartLow { others_busy: f64 },
}

impl Governor {
    /// A governor from `first`, for a configured count of `max`.
    pub fn new(max: i32, first: Sample) -> Governor {
        Governor {
            max,
            current: max,
            last: first,
            next_try: first.at,
            hold: FIRST_HOLD,
            raised_at: None,
        }
    }

    pub fn threads(&self) -> i32 {
        self.current
    }

    /// At a trial's start (the governor's first sample is now): one thread
    /// if other processes, since `earlier`, left fewer free cores than
    /// [`observe`](Self::observe) needs to raise the count. The first raise
    /// may then come after the first hold.
    pub fn start(&mut self, earlier: &Sample) -> Option<Change> {
        let others_busy = self.last.others_busy_since(earlier)?;
        let cpus = f64::from(self.last.cpus);
        // The raise: idle >= FREE * (max - 1) while this process uses one core.
        if self.max <= 1 || cpus - 1.0 - others_busy >= FREE * f64::from(self.max - 1) {
            return None;
        }
        self.current = 1;
        self.next_try = self.last.at + self.hold;
        Some(Change::StartLow { others_busy })
    }

    /// Takes a new sample; returns the change to make, if any.
    pub fn observe(&mut self, now: Sample) -> Option<Change> {
        let wall = now.at.saturating_duration_since(self.last.at);
        if wall < WINDOW {
            return None;
        }
        let last = std::mem::replace(&mut self.last, now);
        let wall_ns = wall.as_nanos() as f64;
        if self.current > 1 {
            let delay = now.run_delay_ns.saturating_sub(last.run_delay_ns) as f64;
            let waited = delay / (wall_ns * f64::from(self.current));
            if waited <= CONTENDED {
                if self
                    .raised_at
                    .is_some_and(|t| now.at.duration_since(t) >= SETTLED)
                {
                    self.hold = FIRST_HOLD;
                    self.raised_at = None;
                }
                return None;
            }
            if self
                .raised_at
                .is_some_and(|t| now.at.duration_since(t) < SETTLED)
            {
                self.hold = (self.hold * 2).min(LONGEST_HOLD);
            }
            self.current = 1;
            self.next_try = now.at + self.hold;
            return Some(Change::Lower { waited });
        }
        let ticks = now.total_ticks.saturating_sub(last.total_ticks);
        if self.max <= 1 || ticks == 0 || now.at < self.next_try {
            return None;
        }
        let idle = now.idle_ticks.saturating_sub(last.idle_ticks) as f64 / ticks as f64;
        let idle_cores = idle * f64::from(now.cpus);
        if idle_cores < FREE * f64::from(self.max - 1) {
            return None;
        }
        self.current = self.max;
        self.raised_at = Some(now.at);
        Some(Change::Raise { idle_cores })
    }
}

/// The training loop's handle: reads the counters each window and applies
/// the governor's changes to this thread; dropping it restores the count.
pub struct CpuShare {
    governor: Option<Governor>,
    steps: u32,
}

impl CpuShare {
    /// For the calling thread's plan (see [`configure`]): inactive with one
    /// thread, `--fixed-threads`, or no kernel counters.
    pub fn for_this_thread() -> CpuShare {
        let (max, adaptive) = PLAN.with(Cell::get);
        let mut governor = if adaptive && max > 1 {
            Sample::read().map(|s| Governor::new(max, s))
        } else {
            None
        };
        if let (Some(g), Some(earlier)) = (governor.as_mut(), SEEN.with(Cell::get)) {
            if let Some(change) = g.start(&earlier) {
                apply(change, g.threads());
            }
        }
        CpuShare { governor, steps: 0 }
    }

    /// Called after every step; reads the clock every 8th.
    pub fn tick(&mut self) {
        let Some(g) = self.governor.as_mut() else {
            return;
        };
        self.steps = self.steps.wrapping_add(1);
        if self.steps % 8 != 0 || g.last.at.elapsed() < WINDOW {
            return;
        }
        let Some(sample) = Sample::read() else {
            return;
        };
        if let Some(change) = g.observe(sample) {
            apply(change, g.threads());
        }
    }
}

/// Sets the calling thread's count to `threads` after `change`, and logs why.
fn apply(change: Change, threads: i32) {
    set_threads(threads);
    let tenths = |x: f64| (x * 10.0).round() / 10.0;
    match change {
        Change::Lower { waited } => tracing::info!(
            waited_pct = (waited * 100.0).round() as u64,
            threads,
            "the CPU is busy with other work: training on one thread until cores are free"
        ),
        Change::StartLow { others_busy } => tracing::info!(
            others_busy_cores = tenths(others_busy),
            threads,
            "other processes keep the cores busy: starting on one thread until cores are free"
        ),
        Change::Raise { idle_cores } => tracing::info!(
            idle_cores = tenths(idle_cores),
            threads,
            "cores are free again: training on all intra-op threads"
        ),
    }
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        if let Some(g) = &self.governor {
            if g.threads() != g.max {
                set_threads(g.max);
            }
            // The next trial's start judges the CPU from here.
            SEEN.with(|s| s.set(Sample::read()));
        }
    }
}

#[cfg(test)]
mod tests;
