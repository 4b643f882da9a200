//! The fuzz targets, one function per decoder the proxy runs on untrusted bytes. Shared by the
//! cargo-fuzz binaries (`fuzz/fuzz_targets/*.rs`, nightly, `make fuzz`) and the stable test
//! `tests/fuzz_decoders.rs`, which runs each over its corpus (`fuzz/corpus/<target>/`) and
//! random mutations of it in a bounded time. A target fails only by panicking: every decoder
//! must answer malformed input with `None`/an error, never a panic.

use shardproxy::frontend::classify::{classify, names_no_table};
use shardproxy::protocol::binary::decode_params;
use shardproxy::protocol::handshake::{ChangeUser, HandshakeResponse};
use shardproxy::protocol::packet::PacketReader;

/// A fuzz target: any bytes in, a panic is the only failure.
pub type Target = fn(&[u8]);

/// The targets by name (the corpus directory of each).
pub const TARGETS: &[(&str, Target)] = &[
    ("packet_reader", packet_reader),
    ("handshake_response", handshake_response),
    ("stmt_execute_params", stmt_execute_params),
    ("lexer_classifier", lexer_classifier),
    ("planner", planner),
];

/// The packet reader over a byte stream: reads packets until the stream ends or is refused.
pub fn packet_reader(data: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = PacketReader::new(data, 1 << 16);
        for _ in 0..64 {
            if r.read().await.is_err() {
                break;
            }
        }
    });
}

/// The handshake response and COM_CHANGE_USER decoders.
pub fn handshake_response(data: &[u8]) {
    let _ = HandshakeResponse::parse(data);
    let caps = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let _ = ChangeUser::parse(data.get(4..).unwrap_or(&[]), caps);
}

/// COM_STMT_EXECUTE parameters: the first byte is the parameter count, the next 2×count
/// bytes the types remembered from an earlier execute, the rest the execute payload.
pub fn stmt_execute_params(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let count = (n % 40) as usize;
    let (types, payload) = rest.split_at(rest.len().min(2 * count));
    if let Some(values) = decode_params(payload, count, types, &[]) {
        for v in values {
            let _ = v.to_sql_literal(true);
            let _ = v.to_sql_literal(false);
        }
    }
    let _ = decode_params(payload, count, types, &[0, 1]);
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The lexer and everything the session decides from it before planning.
pub fn lexer_classifier(data: &[u8]) {
    let sql = text(data);
    let _ = shardproxy::lex::tokenize(&sql);
    let _ = classify(&sql);
    let _ = names_no_table(&sql);
    let _ = shardproxy::frontend::rewrite::proxy_values(
        &sql,
        7,
        shardproxy::frontend::proxy_vars::ProxySettings::default,
    );
    let _ = shardproxy::frontend::proxy_vars::show_variables(&sql);
    let _ = shardproxy::frontend::rewrite::reads_proxy_setting(&sql);
    let _ = shardproxy::frontend::processlist::request(&sql);
    let _ = shardproxy::frontend::processlist::rewrite_information_schema(&sql);
    let _ = shardproxy::frontend::audit::digest(&sql);
}

fn rules() -> &'static shardproxy::plan::Rules {
    static R: std::sync::OnceLock<shardproxy::plan::Rules> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let config = shardproxy::config::Config::parse(
            "[backend]\nuser = \"u\"\npassword = \"p\"\n\
             [[shards]]\nname = \"s1\"\nprimary = \"127.0.0.1:1\"\n\
             [[shards]]\nname = \"s2\"\nprimary = \"127.0.0.1:2\"\n\
             [sharding]\ndefault_shard = \"s1\"\nreference_tables = [\"currencies\"]\n\
             [[sharding.tables]]\nname = \"accounts\"\nkey = \"account_id\"\n\
             [[sharding.tables]]\nname = \"orders\"\nkey = \"order_id\"\nsequence = true\n",
        )
        .expect("fuzz config");
        shardproxy::plan::Rules::from_config(&config)
    })
}

/// The planner on arbitrary SQL, and the plan's own description.
pub fn planner(data: &[u8]) {
    let sql = text(data);
    let ctx = shardproxy::plan::PlanContext {
        rules: rules(),
        current_db: Some("fund"),
        allow_scatter_writes: data.len().is_multiple_of(2),
    };
    let plan = shardproxy::plan::plan(&sql, &ctx);
    let _ = plan.describe(&sql);
    let _ = plan.shards();
}
