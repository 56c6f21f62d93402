//! Argon2 runs on a few threads of its own. Each hash takes about 19 MiB;
//! run on tokio's blocking pool, every thread that ever ran one kept that
//! memory in its malloc arena, and a login storm grew the store by
//! hundreds of MiB for good. A fixed set of threads bounds both the CPU
//! argon2 takes from other RPCs and the memory it keeps.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

pub struct Argon2Pool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Argon2Pool {
    /// Starts `threads` (at least one) worker threads.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            // The pool is gone.
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    /// Runs `f` on a pool thread; `None` if the pool has stopped.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .ok()?;
        rx.await.ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_its_own_threads() {
        let pool = Argon2Pool::new(2).unwrap();
        let names = futures::future::join_all((0..8).map(|_| {
            pool.run(|| {
                std::thread::current()
                    .name()
                    .unwrap_or_default()
                    .to_string()
            })
        }))
        .await;
        for n in names {
            assert!(n.unwrap().starts_with("argon2-"));
        }
    }
}

/// Argon2 with memory kept by the calling thread between calls (each pool
/// thread allocates its ~19 MiB once). Allocating and freeing it per call
/// left glibc holding it: a store that had hashed 20 passwords kept
/// about 360 MiB.
pub mod reuse {
    use std::cell::RefCell;

    use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
    use argon2::{Algorithm, Argon2, Block, Params, Version};
    use rand::RngCore;

    thread_local! {
        static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
    }

    fn hash_into(
        a: &Argon2<'_>,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), argon2::Error> {
        MEMORY.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() < params.block_count() {
                m.resize(params.block_count(), Block::default());
            }
            let blocks = params.block_count();
            a.hash_password_into_with_memory(password, salt, out, &mut m[..blocks])
        })
    }

    /// Whether `password` matches the PHC string `phc` (any Argon2 variant,
    /// version and parameters it names); the comparison is constant-time.
    pub fn verify(password: &[u8], phc: &str) -> bool {
        let Ok(h) = PasswordHash::new(phc) else {
            return false;
        };
        let (Ok(alg), Ok(params), Some(salt), Some(expected)) = (
            Algorithm::try_from(h.algorithm.as_str()),
            Params::try_from(&h),
            h.salt.as_ref(),
            h.hash.as_ref(),
        ) else {
            return false;
        };
        let version = match h.version.map(Version::try_from).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => return false,
        };
        let a = Argon2::new(alg, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        if hash_into(&a, &params, password, salt.as_ref(), &mut out).is_err() {
            return false;
        }
        Output::new(&out).is_ok_and(|o| &o == expected)
    }

    /// A new Argon2id PHC string for `password` with a random salt and the
    /// crate's default parameters.
    pub fn hash(password: &[u8]) -> Result<String, String> {
        let params = Params::default();
        let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
        hash_into(&a, &params, password, &salt, &mut out).map_err(|e| e.to_string())?;
        let params_string = ParamsString::try_from(&params).map_err(|e| e.to_string())?;
        let salt = Salt::new(&salt).map_err(|e| e.to_string())?;
        let out = Output::new(&out).map_err(|e| e.to_string())?;
        Ok(format!("$argon2id$v=19${params_string}${salt}${out}"))
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use argon2::{PasswordHasher, PasswordVerifier};

        /// Our hashes verify with the crate's own verifier and the crate's
        /// hashes (also other parameters) with ours; wrong passwords and
        /// broken strings never do.
        #[test]
        fn agrees_with_the_argon2_crate() {
            let ours = super::hash(b"correct horse").unwrap();
            argon2::Argon2::default()
                .verify_password(b"correct horse", ours.as_str())
                .unwrap();
            assert!(super::verify(b"correct horse", &ours));
            assert!(!super::verify(b"correct horsf", &ours));
            let theirs = argon2::Argon2::default()
                .hash_password(b"battery staple")
                .unwrap()
                .to_string();
            assert!(super::verify(b"battery staple", &theirs));
            assert!(!super::verify(b"battery", &theirs));
            let small = argon2::Argon2::new(
                argon2::Algorithm::Argon2i,
                argon2::Version::V0x10,
                argon2::Params::new(64, 1, 1, Some(16)).unwrap(),
            )
            .hash_password(b"pw")
            .unwrap()
            .to_string();
            assert!(super::verify(b"pw", &small), "{small}");
            assert!(!super::verify(b"pw", "$argon2id$v=19$m=64,t=1,p=1$broken"));
            assert!(!super::verify(b"pw", ""));
        }
    }
}
