//! A throwaway PostgreSQL cluster for `order-gateway dev`: initdb + pg_ctl in
//! a temporary directory, on a free loopback port, trust auth, stopped and
//! removed when dropped. Runs the server as the `postgres` OS user when we are
//! root (initdb refuses to run as root).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

/// A running temporary cluster; dropping it stops the server and deletes its files.
#[derive(Debug)]
pub struct TempCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as: Option<String>,
}

impl TempCluster {
    /// Creates and starts a cluster. Fails with one line saying how to install
    /// PostgreSQL when no server binaries are found.
    pub fn start() -> anyhow::Result<Self> {
        let bin = find_bin_dir().context(
            "no PostgreSQL server found (initdb/pg_ctl); install it (Debian/Ubuntu: \
             apt-get install postgresql) or set DATABASE_URL",
        )?;
        let run_as = is_root().then(|| "postgres".to_string());
        let dir = std::env::temp_dir().join(format!("order-gateway-dev-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).context("cannot create a temporary directory")?;
        let port = free_port()?;
        let cluster = Self {
            dir,
            bin,
            port,
            run_as,
        };
        if let Some(user) = &cluster.run_as {
            run(Command::new("chown").args(["-R", user]).arg(&cluster.dir))?;
        }
        cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let opts = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off",
            cluster.port,
            cluster.dir.display()
        );
        let log = cluster.dir.join("server.log").display().to_string();
        cluster.pg(
            "pg_ctl",
            &[
                "-D",
                &cluster.data(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )?;
        Ok(cluster)
    }

    /// URL of the `postgres` database on this cluster.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The directory holding the cluster (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn pg(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args).current_dir(&self.dir);
        run(&mut cmd).with_context(|| format!("{tool} failed"))
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self.pg("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("cannot run command")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{}", err.lines().last().unwrap_or("exited with an error"));
    }
    Ok(())
}

fn find_bin_dir() -> Option<PathBuf> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has(d))
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has(d)))
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_temporary_cluster_starts_answers_and_is_removed_on_drop() {
        let cluster = tokio::task::spawn_blocking(TempCluster::start)
            .await
            .unwrap()
            .expect("this machine has PostgreSQL server binaries");
        let dir = cluster.dir.clone();
        let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
        let one: i32 = sqlx::query_scalar("select 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(one, 1);
        pool.close().await;
        tokio::task::spawn_blocking(move || drop(cluster))
            .await
            .unwrap();
        assert!(!dir.exists(), "the cluster's directory is removed");
    }
}
