//! Real processes for fault tests: `scaidrive serve` as a child process
//! (killed with SIGKILL when a test wants a crash) and a private PostgreSQL
//! cluster that a test may crash and restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One server process.
pub(crate) struct Server {
    child: Mutex<Option<Child>>,
    pub(crate) base: String,
    pub(crate) port: u16,
}

impl Server {
    /// A server on a free port; `database_url` "" = SQLite in `data_dir`.
    pub(crate) fn start(data_dir: &Path, database_url: &str, extra: &[(&str, String)]) -> Server {
        Self::start_on(free_port(), data_dir, database_url, extra)
    }

    /// A server on `port` (a restarted server takes its predecessor's port).
    pub(crate) fn start_on(
        port: u16,
        data_dir: &Path,
        database_url: &str,
        extra: &[(&str, String)],
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scaidrive"));
        cmd.arg("serve")
            .env("SCAIDRIVE_BIND", format!("127.0.0.1:{port}"))
            .env("SCAIDRIVE_DATA_DIR", data_dir)
            .env("SCAIDRIVE_DATABASE_MAX_CONNECTIONS", "8")
            // Generous: other tests' open transactions on the shared cluster
            // hold the read watermark back for a moment.
            .env("SCAIDRIVE_CONSISTENCY_WAIT_MS", "30000")
            .env("SCAIDRIVE_DRAIN_DELAY_MS", "0")
            .env("SCAIDRIVE_RATE_LIMIT_PER_TOKEN", "1000000")
            .env("SCAIDRIVE_RATE_LIMIT_PER_USER", "1000000")
            .env("SCAIDRIVE_RATE_LIMIT_PER_TENANT", "1000000")
            .env("SCAIDRIVE_LOG", "error,scaidrive::lease=info")
            .env_remove("SCAIDRIVE_KAFKA_BROKERS")
            .stdout(Stdio::null());
        if database_url.is_empty() {
            cmd.env_remove("SCAIDRIVE_DATABASE_URL");
        } else {
            cmd.env("SCAIDRIVE_DATABASE_URL", database_url);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Server {
            child: Mutex::new(Some(cmd.spawn().expect("start a server"))),
            base: format!("http://127.0.0.1:{port}/api/v1"),
            port,
        }
    }

    /// Waits until `/ready` answers 200.
    pub(crate) async fn wait_ready(&self, client: &reqwest::Client, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = client.get(format!("{}/ready", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if let Some(c) = self.child.lock().as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("{} exited before it was ready: {status}", self.base);
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} never became ready",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no draining, no goodbye to the database.
    pub(crate) fn kill(&self) {
        if let Some(mut c) = self.child.lock().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The newest PostgreSQL server binaries on this machine, if any.
pub(crate) fn server_binaries() -> Option<PathBuf> {
    let mut dirs: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    for root in ["/usr/lib/postgresql", "/usr/local/lib/postgresql"] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for e in entries.flatten() {
            let version = e
                .file_name()
                .to_string_lossy()
                .split('.')
                .map(|p| p.parse().unwrap_or(0))
                .collect();
            dirs.push((version, e.path().join("bin")));
        }
    }
    dirs.sort();
    let usable = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    dirs.into_iter()
        .rev()
        .map(|(_, d)| d)
        .find(|d| usable(d))
        .or_else(|| {
            // Elsewhere: wherever `pg_ctl` is on the PATH.
            std::env::var_os("PATH")
                .and_then(|path| std::env::split_paths(&path).find(|d| usable(d)))
        })
}

/// A private cluster in a temporary directory, stopped when dropped.
pub(crate) struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// initdb refuses to run as root: then everything runs as `postgres`.
    as_postgres: bool,
}

impl Cluster {
    pub(crate) fn create(bin: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                ok.success(),
                "cannot hand the cluster directory to postgres"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let cluster = Cluster {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
            ],
        );
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        );
    }

    pub(crate) fn kill(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pid = self.dir.path().join("data/postmaster.pid");
        if pid.exists() {
            let exe = self.bin.join("pg_ctl");
            let data = self.data();
            let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
            let _ = if self.as_postgres {
                Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(&exe)
                    .args(args)
                    .output()
            } else {
                Command::new(&exe).args(args).output()
            };
        }
    }
}

/// Runs a blocking cluster command off the runtime's threads.
pub(crate) async fn blocking(cluster: &Arc<Cluster>, f: fn(&Cluster)) {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .expect("cluster command");
}
