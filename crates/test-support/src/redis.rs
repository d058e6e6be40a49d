//! `TestRedis`: the shared Redis server with a random key prefix per test, so tests run in
//! parallel without seeing each other's keys. Keys under the prefix are deleted on drop.

use deadpool_redis::{Config, Pool, Runtime};

/// Base URL of the test Redis (`OPENWATCH_TEST_REDIS_URL`, default the local server).
pub fn redis_url() -> String {
    std::env::var("OPENWATCH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// A per-test key namespace on the real Redis.
pub struct TestRedis {
    url: String,
    prefix: String,
    pool: Pool,
}

impl TestRedis {
    /// A pool on the test Redis and a fresh prefix `test:<uuid>:`.
    pub fn new() -> Self {
        let url = redis_url();
        let pool = Config::from_url(url.clone()).create_pool(Some(Runtime::Tokio1)).expect("redis pool");
        let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
        Self { url, prefix, pool }
    }

    /// The Redis URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix every key of this test must start with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A pool on the test Redis.
    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}*", self.prefix);
        // Drop cannot be async; clean up with a blocking client on its own thread.
        let cleanup = std::thread::spawn(move || -> redis::RedisResult<()> {
            let client = redis::Client::open(url)?;
            let mut conn = client.get_connection()?;
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).query::<()>(&mut conn)?;
            }
            Ok(())
        });
        let _ = cleanup.join();
    }
}
