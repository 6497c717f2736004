//! Throwaway PostgreSQL for tests: one cluster per test process, started from the system's
//! server binaries (as the unprivileged `postgres` user when the tests run as root) and stopped
//! by its PID when the process exits; or the server named by `WASMHOOK_TEST_DATABASE_URL`.
//! Every test gets a fresh database cloned from a migrated template, dropped afterwards.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use sqlx::Executor;
use tokio::sync::OnceCell;
use wasmhook::store::embedded_postgres::{ClusterOptions, EmbeddedPostgres, stop_postmaster};

struct TestServer {
    /// URL template with `{database}` where the database name goes.
    url_template: String,
    template_database: String,
}

static SERVER: OnceCell<TestServer> = OnceCell::const_new();
static CLUSTER_PID: AtomicI32 = AtomicI32::new(0);
static CLUSTER_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
static CLONE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

extern "C" fn stop_test_cluster() {
    let pid = CLUSTER_PID.load(Ordering::SeqCst);
    if pid > 0 {
        stop_postmaster(pid);
    }
    if let Ok(mut dir) = CLUSTER_DIR.lock()
        && let Some(dir) = dir.take()
    {
        let _ = std::fs::remove_dir_all(dir);
    }
}

async fn server() -> &'static TestServer {
    SERVER
        .get_or_init(|| async {
            let url_template = match std::env::var("WASMHOOK_TEST_DATABASE_URL") {
                Ok(url) => replace_database(&url, "{database}"),
                Err(_) => start_cluster(),
            };
            let template_database = format!("wasmhook_template_{}", uuid::Uuid::now_v7().simple());
            let admin = admin_pool(&url_template);
            admin
                .execute(format!("CREATE DATABASE {template_database}").as_str())
                .await
                .expect("creating the template database");
            admin.close().await;
            let template = wasmhook::store::connect(
                &url_template.replace("{database}", &template_database),
                1,
                std::time::Duration::from_secs(10),
            )
            .unwrap();
            wasmhook::store::migrate(&template)
                .await
                .expect("migrating the template");
            template.close().await;
            TestServer {
                url_template,
                template_database,
            }
        })
        .await
}

fn start_cluster() -> String {
    let dir = tempfile::Builder::new()
        .prefix("wasmhook-test-pg")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    let cluster = EmbeddedPostgres::start(
        &dir,
        ClusterOptions {
            throwaway: true,
            ..ClusterOptions::default()
        },
    )
    .expect("starting a throwaway PostgreSQL cluster");
    CLUSTER_PID.store(cluster.pid().expect("the cluster runs"), Ordering::SeqCst);
    *CLUSTER_DIR.lock().unwrap() = Some(dir);
    // SAFETY: registering a plain `extern "C" fn` with no captured state is sound; it runs at
    // process exit, after the tests, when nothing else uses the cluster.
    unsafe {
        libc::atexit(stop_test_cluster);
    }
    cluster.url("{database}")
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

fn admin_pool(url_template: &str) -> sqlx::PgPool {
    wasmhook::store::connect(
        &url_template.replace("{database}", "postgres"),
        1,
        std::time::Duration::from_secs(10),
    )
    .unwrap()
}

/// Runs one statement on the `postgres` database. A busy postmaster can leave a new connection
/// unaccepted long enough that the socket's queue is full and connecting fails at once with
/// `EAGAIN`; that is retried, a bounded number of times, rather than failing the test.
async fn execute_as_admin(url_template: &str, statement: &str) -> Result<(), sqlx::Error> {
    let mut attempts_left = 50;
    loop {
        let admin = admin_pool(url_template);
        let result = admin.execute(statement).await.map(|_| ());
        admin.close().await;
        match result {
            Err(sqlx::Error::Io(error))
                if error.kind() == std::io::ErrorKind::WouldBlock && attempts_left > 0 =>
            {
                attempts_left -= 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// A fresh migrated database, dropped when this value is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    url_template: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let server = server().await;
        let name = format!("wasmhook_test_{}", uuid::Uuid::now_v7().simple());
        {
            let _serialized = CLONE_LOCK.lock().await;
            let statement = format!(
                "CREATE DATABASE {name} TEMPLATE {}",
                server.template_database
            );
            execute_as_admin(&server.url_template, &statement)
                .await
                .expect("cloning the template database");
        }
        TestDatabase {
            url: server.url_template.replace("{database}", &name),
            name,
            url_template: server.url_template.clone(),
        }
    }

    pub fn pool(&self) -> sqlx::PgPool {
        wasmhook::store::connect(&self.url, 4, std::time::Duration::from_secs(10)).unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url_template = self.url_template.clone();
        // Dropping needs async IO; a short-lived runtime on its own thread does it without
        // touching the test's runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = execute_as_admin(&url_template, &statement).await;
            });
        })
        .join();
    }
}
