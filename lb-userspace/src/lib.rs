//! The xlb control plane: loading and attaching the XDP program, reading its counters, running
//! it on test packets. The `xlb` binary is a thin dispatcher over these modules.
pub mod apply;
pub mod args;
pub mod attach;
pub mod audit;
pub mod backend;
pub mod capacity;
pub mod config;
pub mod counters;
pub mod decap;
pub mod down;
pub mod exit;
pub mod explain;
pub mod live;
pub mod maglev;
pub mod maps;
pub mod object;
pub mod pins;
pub mod plan;
pub mod report;
pub mod rollout;
pub mod run;
pub mod stats;
pub mod status;
pub mod steering;
pub mod testrun;
pub mod validate;
