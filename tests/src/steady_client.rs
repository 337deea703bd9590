//! A client that opens connections to a daemon lab's VIP at a steady pace on a background
//! thread, counting what it made and what failed: the load under which tests change the
//! daemon's state (reloads, a kill and restart) and then require that no connection failed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::daemon_lab::Connector;

/// The pause between two connections.
const PACE: Duration = Duration::from_millis(2);

/// What the client saw once stopped.
pub struct Ran {
    /// Connections made, answered or failed.
    pub made: u64,
    /// One line per failed connection: when, and why.
    pub failures: Vec<String>,
    /// Connections answered, per backend.
    pub answered: Vec<u64>,
}

pub struct SteadyClient {
    made: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<Ran>>,
}

impl SteadyClient {
    /// Starts connecting through `connector` until stopped, or `max_connections` made, or
    /// `max_time` passed (bounds for a test that fails before stopping it).
    pub fn start(connector: Connector, max_connections: u64, max_time: Duration) -> SteadyClient {
        let made = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (made, stop) = (Arc::clone(&made), Arc::clone(&stop));
            std::thread::spawn(move || {
                connector.session(|session| {
                    let start = Instant::now();
                    let mut ran = Ran {
                        made: 0,
                        failures: Vec::new(),
                        answered: vec![0; connector.backends()],
                    };
                    while !stop.load(Ordering::Relaxed)
                        && start.elapsed() < max_time
                        && made.load(Ordering::Relaxed) < max_connections
                    {
                        match session.ask() {
                            Ok(backend) => ran.answered[backend] += 1,
                            Err(err) => ran
                                .failures
                                .push(format!("at {:?}: {err:#}", start.elapsed())),
                        }
                        made.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(PACE);
                    }
                    ran.made = made.load(Ordering::Relaxed);
                    ran
                })
            })
        };
        SteadyClient { made, stop, thread }
    }

    /// Connections made so far, answered or failed.
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// Stops the client and returns what it saw.
    pub fn stop(self) -> Ran {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("client thread")
            .expect("client namespace")
    }
}
