//! xlb's test harness: the privilege gate for kernel-backed tests, network-namespace labs, and
//! packet fixtures. Used by the integration tests in tests/tests, the lab and the benchmarks.
pub mod connect;
pub mod daemon_lab;
pub mod demo;
pub mod drills;
pub mod echo;
pub mod fixtures;
pub mod flood;
pub mod lab;
pub mod lab_site;
pub mod live;
pub mod netns;
pub mod network;
pub mod packets;
pub mod privilege;
pub mod prometheus;
pub mod report;
pub mod run_lab;
pub mod scale_out;
pub mod shares;
pub mod steady_client;
pub mod steering;
pub mod systemd;
pub mod topology;
pub mod wait;
