//! Session state that can be moved between backend connections.
//!
//! A client does not own a backend connection while idle, so whatever it set on "its"
//! connection (current database, character set, session variables, the multi-statement
//! option) is tracked here and re-applied on whichever pooled connection serves its next
//! statement. Each backend connection carries the state applied on it; [`SessionVars::sync`]
//! computes the cheapest way to make a connection's state equal to a client's.
//! State that cannot be carried (user variables, temporary tables, locks, open transactions)
//! pins the session to its connection instead; see `frontend::classify`.

use std::collections::BTreeMap;

/// Movable session state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionVars {
    /// Current database (`USE`, COM_INIT_DB, connect-with-db).
    pub db: Option<String>,
    /// Text after `SET NAMES` / `SET CHARACTER SET` (e.g. `utf8mb4 COLLATE utf8mb4_bin`);
    /// `None`: the charset of the handshake.
    pub names: Option<String>,
    /// Session variables by normalised name → the assignment to replay (`sql_mode = 'ANSI'`).
    pub vars: BTreeMap<String, String>,
    /// Multi-statements switched by COM_SET_OPTION; `None`: as the handshake asked.
    pub multi_statements: Option<bool>,
}

/// How to bring a connection's state to a client's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncPlan {
    pub init_db: Option<String>,
    /// One `SET …` statement with every assignment that differs.
    pub set_sql: Option<String>,
    pub set_option: Option<bool>,
}

impl SyncPlan {
    pub fn is_empty(&self) -> bool {
        self.init_db.is_none() && self.set_sql.is_none() && self.set_option.is_none()
    }
}

impl SessionVars {
    /// What to run on a connection in state `self` so it reaches `wanted`; `None` when no
    /// statement can (a database cannot be unselected, a charset not reverted by name): the
    /// caller takes a fresh connection instead.
    pub fn sync(&self, wanted: &SessionVars) -> Option<SyncPlan> {
        let mut plan = SyncPlan::default();
        if self == wanted {
            return Some(plan);
        }
        match (&self.db, &wanted.db) {
            (a, b) if a == b => {}
            (_, Some(db)) => plan.init_db = Some(db.clone()),
            (Some(_), None) => return None,
            (None, None) => {}
        }
        let mut parts: Vec<String> = Vec::new();
        match (&self.names, &wanted.names) {
            (a, b) if a == b => {}
            (_, Some(n)) => parts.push(format!("NAMES {n}")),
            (Some(_), None) => return None,
            (None, None) => {}
        }
        for (k, assignment) in &wanted.vars {
            if self.vars.get(k) != Some(assignment) {
                parts.push(assignment.clone());
            }
        }
        for k in self.vars.keys() {
            if !wanted.vars.contains_key(k) {
                parts.push(format!("SESSION {k} = DEFAULT"));
            }
        }
        if !parts.is_empty() {
            plan.set_sql = Some(format!("SET {}", parts.join(", ")));
        }
        if self.multi_statements != wanted.multi_statements {
            // Back to the handshake's setting is unknowable here: a fresh connection.
            plan.set_option = Some(wanted.multi_statements?);
        }
        Some(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> SessionVars {
        SessionVars {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), format!("{k} = {v}")))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn equal_states_need_nothing() {
        let a = vars(&[("sql_mode", "''")]);
        assert!(a.sync(&a.clone()).unwrap().is_empty());
    }

    #[test]
    fn differing_and_extra_vars() {
        let conn = vars(&[("sql_mode", "''"), ("time_zone", "'+00:00'")]);
        let want = vars(&[("sql_mode", "'ANSI'")]);
        let plan = conn.sync(&want).unwrap();
        assert_eq!(
            plan.set_sql.unwrap(),
            "SET sql_mode = 'ANSI', SESSION time_zone = DEFAULT"
        );
    }

    #[test]
    fn database_and_names() {
        let conn = SessionVars::default();
        let want = SessionVars {
            db: Some("fund".into()),
            names: Some("utf8mb4".into()),
            ..Default::default()
        };
        let plan = conn.sync(&want).unwrap();
        assert_eq!(plan.init_db.as_deref(), Some("fund"));
        assert_eq!(plan.set_sql.as_deref(), Some("SET NAMES utf8mb4"));
        // The way back is impossible: a fresh connection is needed.
        assert!(want.sync(&conn).is_none());
    }
}
