//! What the end-to-end tests share: the suite's functions and a harness that runs a real
//! cluster (cluster manager and node managers as separate processes on 127.0.0.1).

#![allow(dead_code)]

pub mod cluster;
pub mod functions;
