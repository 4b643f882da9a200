//! Numbers of the MySQL protocol: capability flags, commands, status flags, error codes.

/// Capability flags (`CLIENT_*`).
pub mod cap {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;

    /// What the proxy offers clients. Not offered: COMPRESS (clients fall back to plain),
    /// SSL (added to the greeting only when `[tls]` is configured), SESSION_TRACK (its OK-packet payload would have to be rewritten).
    pub const PROXY_OFFERS: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | LOCAL_FILES
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | RESERVED
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_CLIENT_DATA
        | DEPRECATE_EOF;

    /// Client capabilities that change what a server sends or accepts. A backend connection
    /// must be opened with the same bits as the client it serves, so its answers can be
    /// relayed untouched; pools are keyed by these bits.
    pub const RELAY_RELEVANT: u32 = FOUND_ROWS
        | LOCAL_FILES
        | IGNORE_SPACE
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | DEPRECATE_EOF;

    /// Always asked of backends.
    pub const BACKEND_BASE: u32 = LONG_PASSWORD
        | LONG_FLAG
        | PROTOCOL_41
        | TRANSACTIONS
        | SECURE_CONNECTION
        | PLUGIN_AUTH
        | PLUGIN_AUTH_LENENC_CLIENT_DATA;
}

/// Command bytes (`COM_*`).
pub mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// Server status flags (`SERVER_*`).
pub mod status {
    pub const IN_TRANS: u16 = 1;
    pub const AUTOCOMMIT: u16 = 2;
    pub const MORE_RESULTS_EXISTS: u16 = 8;
    pub const CURSOR_EXISTS: u16 = 64;
    pub const LAST_ROW_SENT: u16 = 128;
    pub const IN_TRANS_READONLY: u16 = 0x2000;
}

/// Error codes the proxy itself sends, with their SQLSTATE.
pub mod err {
    pub const ER_ACCESS_DENIED: (u16, &str) = (1045, "28000");
    pub const ER_BAD_DB: (u16, &str) = (1049, "42000");
    pub const ER_UNKNOWN_COM: (u16, &str) = (1047, "08S01");
    pub const ER_NET_PACKET_TOO_LARGE: (u16, &str) = (1153, "08S01");
    pub const ER_NET_PACKETS_OUT_OF_ORDER: (u16, &str) = (1156, "08S01");
    pub const ER_MALFORMED_PACKET: (u16, &str) = (1835, "HY000");
    pub const ER_NO_SUCH_THREAD: (u16, &str) = (1094, "HY000");
    pub const ER_QUERY_INTERRUPTED: (u16, &str) = (1317, "70100");
    pub const ER_CON_COUNT: (u16, &str) = (1040, "08004");
    pub const ER_NOT_SUPPORTED_YET: (u16, &str) = (1235, "42000");
    pub const ER_UNKNOWN_STMT_HANDLER: (u16, &str) = (1243, "HY000");
    pub const ER_SERVER_SHUTDOWN: (u16, &str) = (1053, "08S01");
    pub const ER_PARSE: (u16, &str) = (1064, "42000");
    /// The proxy could not reach or lost its backend. Not the client-side 2013 (CR_SERVER_LOST):
    /// client libraries treat that code as their own connection dying and reconnect.
    pub const ER_NET_READ_ERROR: (u16, &str) = (1158, "08S01");
    /// A backend did not answer within the configured timeout.
    pub const ER_NET_READ_INTERRUPTED: (u16, &str) = (1159, "08S01");
    /// Waited too long for a pooled backend connection.
    pub const ER_LOCK_WAIT_TIMEOUT_POOL: (u16, &str) = (1205, "HY000");
}

/// The utf8mb4_general_ci collation id, used when a client names none the proxy knows.
pub const DEFAULT_COLLATION: u8 = 45;
