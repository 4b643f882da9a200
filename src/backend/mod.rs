//! Backend connections ([`conn`]), their pools ([`pool`]), the shards' servers ([`topology`]),
//! their health checks ([`health`]), stopping a statement on a server ([`kill`]), and TLS to
//! the servers ([`tls`]).

pub mod conn;
pub mod health;
pub mod kill;
pub mod pool;
pub mod tls;
pub mod topology;
