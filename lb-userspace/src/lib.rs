//! The xlb control plane: loading and attaching the XDP program, reading its counters, running
//! it on test packets. The `xlb` binary is a thin dispatcher over these modules.
pub mod apply;
pub mod args;
pub mod attach;
pub mod capacity;
pub mod config;
pub mod counters;
pub mod decap;
pub mod exit;
pub mod live;
pub mod maglev;
pub mod maps;
pub mod object;
pub mod run;
pub mod steering;
pub mod testrun;
pub mod validate;
