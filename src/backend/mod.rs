//! Backend connections ([`conn`]), their pools ([`pool`]), the shards' servers ([`topology`]),
//! their health checks ([`health`]), and stopping a statement on a server ([`kill`]).

pub mod conn;
pub mod health;
pub mod kill;
pub mod pool;
pub mod table_rows;
pub mod topology;
