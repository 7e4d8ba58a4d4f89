//! Password hashing (Argon2id) on a small pool of dedicated threads, each owning one
//! preallocated Argon2 memory buffer, so hashing memory is `workers × m_cost`, fixed,
//! whatever the load. Requests wait in a bounded queue; when it is full they are refused
//! with `service_unavailable` and `Retry-After` instead of growing memory (issue 11, item 2;
//! DECISIONS.md 32).

use crate::auth::limits::Refused;
use crate::error::ErrorCode;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::TryRng;
use rand::rngs::SysRng;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Iterations and lanes of every new hash (the memory cost is `--argon2-memory-kib`).
const T_COST: u32 = 2;
const P_COST: u32 = 1;
/// How long a refused caller is told to wait before trying again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// How the pool is sized.
#[derive(Debug, Clone, Copy)]
pub struct HashingConfig {
    /// Argon2id memory cost of new hashes, in KiB.
    pub memory_kib: u32,
    /// Hashing threads; 0 = one per core.
    pub workers: usize,
    /// Requests that may wait for a worker; more are refused.
    pub queue: usize,
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// A handle on the hashing pool; clones share it. The workers stop when the last handle goes.
#[derive(Clone)]
pub struct PasswordHashing {
    jobs: SyncSender<Job>,
    workers: usize,
}

impl PasswordHashing {
    /// Starts the workers; each allocates its buffer of `memory_kib` now, once.
    pub fn new(config: HashingConfig) -> anyhow::Result<Self> {
        let params =
            Params::new(config.memory_kib, T_COST, P_COST, None).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // Waiting jobs sit in the channel; a worker takes one as soon as it is free.
        let (jobs, receiver) = sync_channel::<Job>(config.queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..workers {
            let receiver = receiver.clone();
            let worker = Worker::new(params.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker.run(&receiver))?;
        }
        Ok(Self { jobs, workers })
    }

    /// Number of hashing threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// A PHC string (`$argon2id$v=19$m=…,t=2,p=1$salt$hash`) for a new password.
    pub async fn hash(&self, password: &str) -> Result<String, Refused> {
        let password = password.to_owned();
        self.run(move |w| w.hash(password.as_bytes()))
            .await?
            .map_err(Refused::internal)
    }

    /// Whether `password` matches the stored hash. Without one (no such account) it does the
    /// same work against the current parameters and answers false, so that a login for an
    /// unknown email takes as long as a wrong password.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, Refused> {
        let (password, stored) = (password.to_owned(), stored.map(str::to_owned));
        self.run(move |w| w.verify(password.as_bytes(), stored.as_deref()))
            .await
    }

    /// Queues `task` for the next free worker; refused at once when the queue is full.
    async fn run<T: Send + 'static>(&self, task: impl FnOnce(&mut Worker) -> T + Send + 'static) -> Result<T, Refused> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |worker| {
            let _ = tx.send(task(worker));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Refused::new(
                    ErrorCode::ServiceUnavailable,
                    "the server is busy checking passwords; try again shortly",
                    BUSY_RETRY,
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Refused::internal(anyhow::anyhow!("the hashing workers are gone")));
            }
        }
        rx.await
            .map_err(|_| Refused::internal(anyhow::anyhow!("a hashing worker dropped its job")))
    }
}

/// One hashing thread and its Argon2 memory.
struct Worker {
    params: Params,
    blocks: Vec<Block>,
}

impl Worker {
    fn new(params: Params) -> Self {
        let blocks = vec![Block::default(); params.block_count()];
        Self { params, blocks }
    }

    fn run(mut self, jobs: &Mutex<Receiver<Job>>) {
        loop {
            // The lock is held only while waiting for the next job, not while hashing.
            let job = match jobs.lock() {
                Ok(receiver) => receiver.recv(),
                Err(_) => return,
            };
            match job {
                Ok(job) => job(&mut self),
                Err(_) => return, // every handle is gone
            }
        }
    }

    /// Argon2 into `out` with this worker's buffer (grown once if a stored hash asks for
    /// more memory than the current setting, e.g. after `--argon2-memory-kib` was lowered).
    fn compute(&mut self, argon2: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
        let needed = argon2.params().block_count();
        if self.blocks.len() < needed {
            self.blocks.resize(needed, Block::default());
        }
        argon2.hash_password_into_with_memory(password, salt, out, &mut self.blocks[..needed])
    }

    fn hash(&mut self, password: &[u8]) -> anyhow::Result<String> {
        let mut salt = [0u8; 16];
        SysRng
            .try_fill_bytes(&mut salt)
            .map_err(|e| anyhow::anyhow!("the OS random source: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.compute(&argon2, password, &salt, &mut out)
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
            salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?),
            hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
        };
        Ok(phc.to_string())
    }

    fn verify(&mut self, password: &[u8], stored: Option<&str>) -> bool {
        let Some(stored) = stored else {
            let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            let _ = self.compute(&argon2, password, &[0u8; 16], &mut out);
            return false;
        };
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let algorithm = Algorithm::new(parsed.algorithm.as_str());
        let version = Version::try_from(parsed.version.unwrap_or(0x10));
        let (Ok(algorithm), Ok(version), Ok(params)) = (algorithm, version, Params::try_from(&parsed)) else {
            return false;
        };
        let argon2 = Argon2::new(algorithm, version, params);
        let mut out = vec![0u8; expected.len()];
        if self.compute(&argon2, password, salt.as_ref(), &mut out).is_err() {
            return false;
        }
        // `Output`'s equality is constant-time.
        Output::new(&out).is_ok_and(|computed| &computed == expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(workers: usize, queue: usize) -> PasswordHashing {
        PasswordHashing::new(HashingConfig {
            memory_kib: 1024,
            workers,
            queue,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn passwords_verify_only_when_right() {
        let hashing = pool(1, 4);
        let stored = hashing.hash("correct horse").await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=1024,t=2,p=1$"), "{stored}");
        assert!(hashing.verify("correct horse", Some(&stored)).await.unwrap());
        assert!(!hashing.verify("wrong", Some(&stored)).await.unwrap());
        assert!(!hashing.verify("correct horse", None).await.unwrap());
        assert!(!hashing.verify("correct horse", Some("not a hash")).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_by_the_argon2_crate_still_verify() {
        use argon2::PasswordHasher;
        let params = Params::new(2048, 2, 1, None).unwrap();
        let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"old password")
            .unwrap()
            .to_string();
        let hashing = pool(1, 4);
        assert!(hashing.verify("old password", Some(&stored)).await.unwrap());
        assert!(!hashing.verify("old passwore", Some(&stored)).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_waiting() {
        let hashing = pool(1, 1);
        // Hold the only worker until released.
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let held = hashing.run(move |_| {
            started_tx.send(()).unwrap();
            wait.recv().unwrap();
        });
        tokio::pin!(held);
        assert!(futures_util::poll!(&mut held).is_pending());
        started.recv().unwrap();
        // One request may wait; the next is refused at once.
        let queued = hashing.hash("queued password");
        tokio::pin!(queued);
        assert!(futures_util::poll!(&mut queued).is_pending());
        let refused = hashing.hash("refused password").await.unwrap_err();
        assert_eq!(refused.error.code, ErrorCode::ServiceUnavailable);
        assert_eq!(refused.retry_after, BUSY_RETRY);
        release.send(()).unwrap();
        held.await.unwrap();
        assert!(queued.await.unwrap().starts_with("$argon2id$"));
    }
}
