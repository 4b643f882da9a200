//! Backend connections ([`conn`]), their pools ([`pool`]), and the shards' servers
//! ([`topology`]).

pub mod conn;
pub mod health;
pub mod pool;
pub mod topology;
