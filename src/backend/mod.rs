//! Backend connections ([`conn`]), their pools ([`pool`]), and the shards' servers
//! ([`topology`]).

pub mod conn;
