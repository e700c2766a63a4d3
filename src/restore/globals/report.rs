//! The typed outcome of the globals step: what a dry run would do, or what
//! was applied, as data; [`GlobalsReport::lines`] is the text output.

use serde::Serialize;

use super::printable;

/// What happens to an existing role's password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordChange {
    None,
    Replaced,
    Kept,
}

/// An existing role the globals alter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlteredRole {
    pub role: String,
    pub password: PasswordChange,
}

/// Pure summary of a checked plan (the dry run's description).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GlobalsPlan {
    pub create_roles: Vec<String>,
    /// Roles the target has already: not created again.
    pub existing_roles: Vec<String>,
    pub altered_roles: Vec<AlteredRole>,
    /// New roles whose statements carry the backup's password.
    pub new_passwords: Vec<String>,
    pub create_tablespaces: Vec<String>,
    pub existing_tablespaces: Vec<String>,
    pub statements: usize,
    pub executed: usize,
    /// GRANT and REVOKE statements among them.
    pub grants: usize,
}

/// What the target had already, so the restore kept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Object {
    Role,
    Tablespace,
}

/// Something applying the globals left as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum GlobalsNotice {
    AlreadyExists { object: Object, name: String },
    PasswordKept { role: String },
}

/// The globals step: planned (dry run) or applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "globals", rename_all = "snake_case")]
pub enum GlobalsReport {
    Planned {
        artifact: String,
        host: String,
        port: u16,
        plan: GlobalsPlan,
    },
    Applied {
        artifact: String,
        host: String,
        port: u16,
        executed: usize,
        notices: Vec<GlobalsNotice>,
    },
}

fn name_list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names
            .iter()
            .map(|n| format!("`{}`", printable(n, 64)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl GlobalsPlan {
    /// The dry run's lines about the plan.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("would create roles: {}", name_list(&self.create_roles)),
            format!(
                "existing roles (not created again): {}",
                name_list(&self.existing_roles)
            ),
        ];
        for a in &self.altered_roles {
            let pw = match a.password {
                PasswordChange::None => "",
                PasswordChange::Replaced => "; its password would be REPLACED by the backup's",
                PasswordChange::Kept => "; its password would be kept (--keep-role-passwords)",
            };
            lines.push(format!(
                "existing role `{}` would get the backup's attributes{pw}",
                printable(&a.role, 64)
            ));
        }
        if !self.new_passwords.is_empty() {
            lines.push(format!(
                "new roles that would get the backup's password: {}",
                name_list(&self.new_passwords)
            ));
        }
        lines.push(format!(
            "would create tablespaces: {}",
            name_list(&self.create_tablespaces)
        ));
        if !self.existing_tablespaces.is_empty() {
            lines.push(format!(
                "existing tablespaces (not created again): {}",
                name_list(&self.existing_tablespaces)
            ));
        }
        lines.push(format!(
            "{} statements checked, {} would be executed ({} GRANT/REVOKE)",
            self.statements, self.executed, self.grants
        ));
        lines
    }
}

impl std::fmt::Display for GlobalsNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GlobalsNotice::AlreadyExists { object, name } => write!(
                f,
                "{} `{}` already exists; kept",
                match object {
                    Object::Role => "role",
                    Object::Tablespace => "tablespace",
                },
                printable(name, 64)
            ),
            GlobalsNotice::PasswordKept { role } => write!(
                f,
                "role `{}`: password kept (--keep-role-passwords)",
                printable(role, 64)
            ),
        }
    }
}

impl GlobalsReport {
    /// The text output's lines: a head line, then the details indented.
    pub fn lines(&self) -> Vec<String> {
        match self {
            GlobalsReport::Planned {
                artifact,
                host,
                port,
                plan,
            } => {
                let mut lines = vec![format!(
                    "globals from {artifact} -> {host}:{port} ({} statements, all of allowed kinds)",
                    plan.statements
                )];
                lines.extend(plan.lines().into_iter().map(|l| format!("  {l}")));
                lines
            }
            GlobalsReport::Applied {
                artifact,
                host,
                port,
                executed,
                notices,
            } => {
                let mut lines = vec![format!(
                    "applied globals from {artifact} to {host}:{port}: {executed} statements executed"
                )];
                lines.extend(notices.iter().map(|n| format!("  {n}")));
                lines
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_globals_render_their_notices_indented() {
        let r = GlobalsReport::Applied {
            artifact: "db/globals.sql.zst".into(),
            host: "h".into(),
            port: 5432,
            executed: 4,
            notices: vec![
                GlobalsNotice::AlreadyExists {
                    object: Object::Tablespace,
                    name: "ts".into(),
                },
                GlobalsNotice::PasswordKept {
                    role: "a\u{7}".into(),
                },
            ],
        };
        assert_eq!(
            r.lines(),
            [
                "applied globals from db/globals.sql.zst to h:5432: 4 statements executed",
                "  tablespace `ts` already exists; kept",
                "  role `a `: password kept (--keep-role-passwords)",
            ]
        );
    }
}
