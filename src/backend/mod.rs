//! Backend connections, pools and health.
