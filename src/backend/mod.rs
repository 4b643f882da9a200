//! Backend connections ([`conn`]), their pools ([`pool`]), the shards' servers and who is
//! primary ([`topology`]), their health checks ([`health`], what they saw: [`observed`], GTID
//! positions: [`gtid`]), the persisted topology ([`persisted`]), the write gate that holds statements during a switch ([`gate`]),
//! automatic failover and switchover ([`failover`]), one decision across several proxies
//! through etcd ([`coordination`]), stopping a statement on a server
//! ([`kill`]), TLS to the servers ([`tls`]), result sets read row by row ([`rows`]), and a
//! table's estimated rows ([`table_rows`]).

pub mod conn;
pub mod coordination;
pub mod failover;
pub mod gate;
pub mod gtid;
pub mod health;
pub mod kill;
pub mod lag;
pub mod observed;
pub mod persisted;
pub mod pool;
pub mod read_set;
pub mod rows;
pub mod table_rows;
pub mod tls;
pub mod topology;
