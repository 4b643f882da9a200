//! The session's own settings read back (`SELECT @@shardproxy_read_from`, `SHOW VARIABLES
//! LIKE 'shardproxy%'`): the session's values gathered for [`crate::frontend::proxy_vars`],
//! which explains how they are answered. Setting them is in `query.rs` (`SET shardproxy_…`).

use super::{Flow, Session};
use crate::frontend::proxy_vars::{ProxySettings, SettingValue, ShowVariables};
use crate::protocol::resultset::RowFormat;

impl Session {
    /// The session's settings, and those a new session of its user starts with.
    pub(super) fn proxy_settings(&self) -> ProxySettings {
        let configured_mode = self.proxy.config().transactions.transaction_mode;
        ProxySettings {
            session: [
                SettingValue::Switch(self.allow_scatter_writes),
                SettingValue::Text(self.read_from.name()),
                SettingValue::Text(self.transaction_mode.name()),
            ],
            global: [
                SettingValue::Switch(false),
                SettingValue::Text(self.configured_read_from().name()),
                SettingValue::Text(configured_mode.name()),
            ],
        }
    }

    /// Answers `SHOW [GLOBAL] VARIABLES LIKE 'shardproxy…'` with the proxy's settings.
    pub(super) async fn show_proxy_variables(
        &mut self,
        q: &ShowVariables,
    ) -> std::io::Result<Flow> {
        let rs = self.proxy_settings().show(q);
        self.send_result_set(&rs, RowFormat::Text).await?;
        Ok(Flow::Continue)
    }
}
