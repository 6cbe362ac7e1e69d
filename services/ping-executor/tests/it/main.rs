//! Integration tests of the ping executor. The probing tests need the network
//! lab (deploy/lab/lab.sh): outside it they print why and pass.
#![allow(clippy::unwrap_used)]

mod path;
mod probe;
