//! `trainerd serve` (and `trainerd run --serve-addr`): the champion in
//! `best/` over the Open Inference Protocol v2, REST and (with
//! `--grpc-addr`) gRPC, hot-swapped when a new one is promoted, requests
//! of both grouped into batches for the forward pass.
//!
//! # Layout
//! - [`protocol`]: the protocol's JSON types; request validation
//! - [`metadata`]: server and model metadata, for REST and gRPC
//! - [`binary`]: Triton's binary tensor data extension (raw tensors after the JSON)
//! - [`batcher`]: the inference thread and its bounded queue
//! - [`swap`]: watches `best/`, loads and verifies new champions
//! - [`engine`]: which engine runs a champion (onnxruntime or libtorch)
//!   (through [`crate::onnxruntime`], which finds and loads the library)
//! - [`infer`]: what both front ends share: model lookup, queueing, waiting
//! - [`failure`]: why a request was not answered (each front end's status for it)
//! - [`kept`]: kept versions (`versions/N/`) loaded on request, a small cache
//! - [`http`]: the axum routes and request limits
//! - [`grpc`]: `GRPCInferenceService` on tonic
//! - [`metrics`]: the Prometheus registry behind `/metrics`
//!
//! This module owns the listener: at most `max_connections` open (more wait
//! in the kernel's backlog), keep-alive on, a connection idle or sending its
//! request head for longer than [`HEAD_TIMEOUT`] closed. The state dir is
//! only read (no lock, no recovery): several servers may share one.

pub mod batcher;
pub mod binary;
pub mod engine;
pub mod failure;
pub mod grpc;
pub mod http;
pub mod infer;
pub mod kept;
pub mod metadata;
pub mod metrics;
pub mod protocol;
pub mod swap;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};

use crate::telemetry::http::{accept_loop, ConnectionPolicy};
use batcher::{BatchSettings, Shared};

/// Time to send a request head, and the longest a kept-alive connection may idle.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub state_dir: PathBuf,
    /// The REST API's address (`None`: gRPC only).
    pub addr: Option<SocketAddr>,
    /// The gRPC service's address (`None`: REST only).
    pub grpc_addr: Option<SocketAddr>,
    pub batch: BatchSettings,
    pub max_connections: usize,
    pub memory_budget: u64,
    /// Poll `best/` instead of waiting for file events.
    pub watch_poll: bool,
    /// The engine of the forward pass.
    pub engine: crate::config::EngineChoice,
    /// Threads for the forward pass (`None`: the CPUs the process may use).
    pub threads: Option<usize>,
    /// onnxruntime sessions sharing the threads (`None`: one per thread).
    pub instances: Option<usize>,
}

impl ServeOptions {
    /// Defaults for REST on `addr` serving `state_dir` (`trainerd run --serve-addr`).
    pub fn new(state_dir: PathBuf, addr: Option<SocketAddr>) -> ServeOptions {
        ServeOptions {
            state_dir,
            addr,
            grpc_addr: None,
            batch: BatchSettings {
                window: Duration::from_millis(2),
                max_batch: 64,
                queue: 1024,
                threads: 1,
            },
            max_connections: 1024,
            memory_budget: crate::data::budget::default_budget(),
            watch_poll: false,
            engine: crate::config::EngineChoice::Auto,
            threads: None,
            instances: None,
        }
    }
}

/// A running server; dropping it stops accepting.
pub struct Server {
    addr: Option<SocketAddr>,
    grpc_addr: Option<SocketAddr>,
    stops: Vec<oneshot::Sender<()>>,
}

impl Server {
    /// The REST API's bound address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }
    /// The gRPC service's bound address.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }
}

/// Exit 78 naming the setting, as other configuration problems.
fn invalid(key: &str, what: String) -> crate::config::ConfigError {
    crate::config::ConfigError::Invalid {
        key: key.into(),
        what,
    }
}

async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, crate::config::ConfigError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| invalid(key, format!("cannot listen on {addr}: {e}")))
}

/// onnxruntime sessions and the intra-op threads of each: `instances`
/// (default: one per thread) sharing `threads` (default: the CPUs this
/// process may use), each given at least one.
fn lanes(threads: Option<usize>, instances: Option<usize>) -> (usize, usize) {
    let threads = threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
        .max(1);
    let instances = instances.unwrap_or(threads).max(1);
    (instances, (threads / instances).max(1))
}

/// Binds, starts the inference and swap threads and serves on the current runtime.
pub async fn start(opts: &ServeOptions) -> anyhow::Result<Server> {
    if !opts.state_dir.is_dir() {
        return Err(invalid(
            "state_dir",
            format!(
                "{} is not a directory (serve reads best/ from the trainer's state dir)",
                opts.state_dir.display()
            ),
        )
        .into());
    }
    let rest = match opts.addr {
        Some(a) => Some(bind(a, "serve_addr").await?),
        None => None,
    };
    let grpc = match opts.grpc_addr {
        Some(a) => Some(bind(a, "grpc_addr").await?),
        None => None,
    };
    let runtime = engine::choose(opts.engine)?;
    let (instances, threads) = lanes(opts.threads, opts.instances);
    let setup = engine::EngineSetup {
        runtime,
        threads,
        instances,
        memory_budget: opts.memory_budget,
    };
    // libtorch runs one forward pass at a time, on its own threads.
    let batch = BatchSettings {
        threads: if runtime.is_some() { instances } else { 1 },
        ..opts.batch
    };
    let shared = Arc::new(Shared::default());
    let metrics = Arc::new(metrics::ServeMetrics::default());
    let batcher = batcher::spawn(batch, shared.clone(), metrics.clone())
        .context("starting the inference thread")?;
    swap::spawn(
        opts.state_dir.clone(),
        setup,
        opts.watch_poll,
        batcher.clone(),
        metrics.clone(),
    )?;
    let kept = kept::Kept::new(opts.state_dir.clone(), setup, batch, metrics.clone());
    let core = infer::Core {
        shared,
        batcher,
        metrics,
        kept: Arc::new(kept),
    };
    let mut server = Server {
        addr: None,
        grpc_addr: None,
        stops: Vec::new(),
    };
    let state_dir = opts.state_dir.display();
    // One budget for the bytes of requests in flight, REST and gRPC alike.
    let bodies = Arc::new(Semaphore::new(http::BODY_BUDGET_KIB));
    if let Some(listener) = grpc {
        let (stop, stopped) = oneshot::channel();
        let limits = grpc::GrpcLimits {
            max_connections: opts.max_connections,
            first_byte: HEAD_TIMEOUT,
            request_timeout: http::REQUEST_TIMEOUT,
        };
        let addr = grpc::spawn(listener, core.clone(), limits, bodies.clone(), stopped)?;
        tracing::info!(%addr, %state_dir, "serving gRPC inference.GRPCInferenceService (Open Inference Protocol)");
        server.grpc_addr = Some(addr);
        server.stops.push(stop);
    }
    if let Some(listener) = rest {
        let addr = listener.local_addr()?;
        let app = http::router(http::AppState { core, bodies });
        let (stop, stopped) = oneshot::channel();
        let policy = ConnectionPolicy {
            max_connections: opts.max_connections,
            head_timeout: HEAD_TIMEOUT,
            keep_alive: true,
            name: "serve",
        };
        tokio::spawn(accept_loop(listener, app, policy, stopped));
        tracing::info!(%addr, %state_dir, "serving /v2 (Open Inference Protocol)");
        server.addr = Some(addr);
        server.stops.push(stop);
    }
    Ok(server)
}

/// Raises the soft open-files limit to the hard one, so the connection cap,
/// not the descriptor table, is what limits clients.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(1 << 16);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// `trainerd serve --probe`: whether the server at `addr` (a wildcard
/// address means this host) answers `/v2/health/ready` with 200.
fn probe(mut addr: SocketAddr) -> crate::exit::Outcome {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{addr}/v2/health/ready");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    match agent.get(&url).call() {
        Ok(r) if r.status() == 200 => {
            println!("ready: {url}");
            crate::exit::Outcome::Done
        }
        Ok(r) => {
            println!("not ready: {url} answered {}", r.status());
            crate::exit::Outcome::Declined
        }
        Err(e) => {
            println!("not ready: {url}: {e}");
            crate::exit::Outcome::Declined
        }
    }
}

/// How the `trainerd serve` process runs, besides what it serves.
#[derive(Debug, Clone, Copy)]
pub struct ServeProcess {
    /// Only ask the server at the address whether it is ready.
    pub probe: bool,
    pub log_format: crate::config::LogFormat,
    /// Threads for the forward pass (default: the library's choice).
    pub threads: Option<usize>,
}

/// `trainerd serve`: serves until SIGTERM or SIGINT.
pub fn run(
    opts: &ServeOptions,
    process: ServeProcess,
    source: crate::control::stops::StopSource,
) -> anyhow::Result<crate::exit::Outcome> {
    if process.probe {
        return match opts.addr {
            Some(addr) => Ok(probe(addr)),
            None => Ok(crate::exit::Outcome::Declined),
        };
    }
    crate::telemetry::logging::init(process.log_format);
    raise_fd_limit();
    if let Some(n) = process.threads {
        tch::set_num_threads(n.clamp(1, 1024) as i32);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("trainerd-serve")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let outcome = rt.block_on(async {
        let flag = crate::train::StopFlag::default();
        let mut stops =
            crate::control::stops::listen(source, flag).context("installing signal handlers")?;
        let server = start(opts).await?;
        stops.recv().await;
        tracing::info!("stop requested; no longer serving");
        drop(server);
        anyhow::Ok(crate::exit::Outcome::Stopped)
    });
    rt.shutdown_timeout(Duration::from_millis(500));
    outcome
}

#[cfg(test)]
mod tests {
    use super::lanes;

    #[test]
    fn instances_share_the_threads_and_each_gets_one_at_least() {
        assert_eq!(lanes(Some(2), None), (2, 1));
        assert_eq!(lanes(Some(8), Some(2)), (2, 4));
        assert_eq!(lanes(Some(2), Some(1)), (1, 2));
        assert_eq!(lanes(Some(2), Some(4)), (4, 1));
        assert_eq!(lanes(Some(0), Some(0)), (1, 1));
    }
}
