//! Measuring: timed runs over many tasks, latency percentiles, Zipfian keys.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, RngExt as _, SeedableRng as _};

/// Tasks (or threads) for the read workloads.
pub const READ_TASKS: usize = 8;

/// Throughput and latency of one workload.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Measured {
    /// Operations completed.
    pub ops: u64,
    /// Operations per second.
    pub ops_per_s: f64,
    /// Median latency, in microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, in microseconds.
    pub p99_us: u64,
}

impl Measured {
    /// Summarizes latencies (microseconds) over the elapsed wall time.
    pub fn from_latencies(mut latencies: Vec<u64>, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        let pick = |fraction: f64| {
            latencies
                .get(
                    ((latencies.len() as f64 * fraction) as usize)
                        .min(latencies.len().saturating_sub(1)),
                )
                .copied()
                .unwrap_or(0)
        };
        Measured {
            ops: latencies.len() as u64,
            ops_per_s: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_us: pick(0.50),
            p99_us: pick(0.99),
        }
    }

    /// Several rounds of one workload as one measurement: their operations over their time;
    /// the latencies' percentiles are the rounds' highest.
    pub fn combine(rounds: &[Measured]) -> Measured {
        let ops: u64 = rounds.iter().map(|round| round.ops).sum();
        let seconds: f64 = rounds
            .iter()
            .filter(|round| round.ops_per_s > 0.0)
            .map(|round| round.ops as f64 / round.ops_per_s)
            .sum();
        Measured {
            ops,
            ops_per_s: if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            },
            p50_us: rounds.iter().map(|round| round.p50_us).max().unwrap_or(0),
            p99_us: rounds.iter().map(|round| round.p99_us).max().unwrap_or(0),
        }
    }
}

/// The median of `ours / theirs` over rounds run in turns (a round whose `theirs` is 0 has no
/// ratio); `None` without a ratio.
pub fn median_of_ratios(rounds: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let mut ratios: Vec<f64> = rounds
        .filter(|(_, theirs)| *theirs > 0.0)
        .map(|(ours, theirs)| ours / theirs)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let middle = ratios.len() / 2;
    match ratios.len() {
        0 => None,
        n if n % 2 == 1 => Some(ratios[middle]),
        _ => Some((ratios[middle - 1] + ratios[middle]) / 2.0),
    }
}

/// The latency of each call of a timed run, in microseconds, and the run's wall time: runs
/// of one workload merge before their percentiles are taken.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// One latency per call, in microseconds.
    pub micros: Vec<u64>,
    /// Wall time of the run (of all the runs merged).
    pub elapsed: Duration,
}

impl Latencies {
    /// Both runs as one: their calls together, over their wall times added.
    pub fn merge(mut self, other: Latencies) -> Latencies {
        self.micros.extend(other.micros);
        self.elapsed += other.elapsed;
        self
    }

    /// Throughput and percentiles.
    pub fn measured(self) -> Measured {
        Measured::from_latencies(self.micros, self.elapsed)
    }
}

/// Runs `operation` on `tasks` tasks until `duration` has passed; measures each call. Each
/// call gets a clone of `context` and a generator of its own ([`rng_for`]).
pub async fn run_for<C, F, Fut>(
    tasks: usize,
    duration: Duration,
    context: C,
    operation: F,
) -> anyhow::Result<Measured>
where
    C: Clone + Send + 'static,
    F: Fn(C, SmallRng) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    Ok(time_tasks(tasks, duration, context, operation)
        .await?
        .measured())
}

/// [`run_for`], returning each call's latency rather than their summary.
pub async fn time_tasks<C, F, Fut>(
    tasks: usize,
    duration: Duration,
    context: C,
    operation: F,
) -> anyhow::Result<Latencies>
where
    C: Clone + Send + 'static,
    F: Fn(C, SmallRng) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + duration;
    time_tasks_while(tasks, move || Instant::now() < deadline, context, operation).await
}

/// Runs `operation` on `tasks` tasks for as long as `keep_going` says so (each task asks
/// before each call); measures each call. Each call gets a clone of `context` and a generator
/// of its own ([`rng_for`]).
pub async fn time_tasks_while<C, F, Fut>(
    tasks: usize,
    keep_going: impl Fn() -> bool + Send + Sync + 'static,
    context: C,
    operation: F,
) -> anyhow::Result<Latencies>
where
    C: Clone + Send + 'static,
    F: Fn(C, SmallRng) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let operation = Arc::new(operation);
    let keep_going = Arc::new(keep_going);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let operation = Arc::clone(&operation);
        let keep_going = Arc::clone(&keep_going);
        let context = context.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while keep_going() {
                let begun = Instant::now();
                operation(context.clone(), rng_for(task, n)).await?;
                latencies.push(u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX));
                n += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await??);
    }
    Ok(Latencies {
        micros: latencies,
        elapsed: started.elapsed(),
    })
}

/// Runs a blocking `operation` on this thread until `duration` has passed; measures each call.
/// Each call gets a generator of its own.
pub fn run_blocking_for(
    duration: Duration,
    operation: impl FnMut(SmallRng) -> anyhow::Result<()>,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let latencies = time_until(started + duration, 0, operation)?;
    Ok(Measured::from_latencies(latencies, started.elapsed()))
}

/// Runs a blocking `operation` on `threads` threads until `duration` has passed; measures each
/// call. Each call gets a generator of its own.
pub fn run_threads_for(
    threads: usize,
    duration: Duration,
    operation: impl Fn(SmallRng) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<Measured> {
    run_threads_with(vec![(); threads.max(1)], duration, |(), rng| operation(rng))
}

/// Runs a blocking `operation` on one thread per state (a connection, say) until `duration` has
/// passed; measures each call. Each call gets its thread's state and a generator of its own,
/// thread `i` the same generators as task `i` of [`run_for`].
pub fn run_threads_with<S: Send>(
    states: Vec<S>,
    duration: Duration,
    operation: impl Fn(&mut S, SmallRng) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let deadline = started + duration;
    let operation = &operation;
    let per_thread: Vec<anyhow::Result<Vec<u64>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = states
            .into_iter()
            .enumerate()
            .map(|(thread, mut state)| {
                scope.spawn(move || time_until(deadline, thread, |rng| operation(&mut state, rng)))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a workload thread panicked")))
            })
            .collect()
    });
    let mut latencies = Vec::new();
    for thread in per_thread {
        latencies.extend(thread?);
    }
    Ok(Measured::from_latencies(latencies, started.elapsed()))
}

/// Calls `operation` until `deadline`, as task `task`; the latency of each call in µs.
fn time_until(
    deadline: Instant,
    task: usize,
    mut operation: impl FnMut(SmallRng) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<u64>> {
    let mut latencies = Vec::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        let begun = Instant::now();
        operation(rng_for(task, n))?;
        latencies.push(u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX));
        n += 1;
    }
    Ok(latencies)
}

/// The generator of operation `n` of task `task`: the same numbers in every run, different
/// ones for every operation.
pub fn rng_for(task: usize, n: u64) -> SmallRng {
    SmallRng::seed_from_u64((task as u64) << 32 | n)
}

/// YCSB's Zipfian generator (Gray et al., "Quickly generating billion-record synthetic
/// databases"): item 0 is the most popular; `theta` 0.99 as in YCSB.
#[derive(Debug, Clone)]
pub struct Zipf {
    items: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

impl Zipf {
    /// A generator over `items` items.
    pub fn new(items: u64, theta: f64) -> Self {
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zeta_n = zeta(items);
        let zeta_2 = zeta(2.min(items));
        Zipf {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta_n,
            eta: (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n),
        }
    }

    /// The next item, in `0..items`.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let item = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        item.min(self.items - 1)
    }
}

/// Peak resident memory of this process so far, in bytes (Linux `VmHWM`; since the last
/// [`reset_peak_rss`]).
pub fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:").map_or(0, |kib| kib * 1024)
}

/// Resident memory of this process now, in bytes (Linux `VmRSS`).
pub fn rss_bytes() -> u64 {
    status_kib("VmRSS:").map_or(0, |kib| kib * 1024)
}

/// Starts the peak ([`peak_rss_bytes`]) again from the present resident memory (Linux 4.0 and
/// later: writing 5 to `/proc/self/clear_refs`); false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `kB` line of `/proc/self/status`.
fn status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_the_first_items() {
        let zipf = Zipf::new(1000, 0.99);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[zipf.sample(&mut rng) as usize] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[500]);
        // About a tenth of the draws fall on the most popular item at theta 0.99 over 1000 items.
        assert!((5_000..20_000).contains(&counts[0]), "{}", counts[0]);
    }
}
