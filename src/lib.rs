//! ncp-bootstrap: node bootstrap and host preparation for Kubernetes nodes whose pod network is
//! NSX. The module map is in ARCHITECTURE.md.

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod fault;
pub mod host;
pub mod inject;
pub mod ledger;
pub mod netmodel;
pub mod render;
pub mod report;
pub mod steps;
pub mod version;
