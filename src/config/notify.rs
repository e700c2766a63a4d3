//! Validation of `notify` blocks (the global one and each job's): URLs,
//! the `on` selection, SMTP settings. URLs may carry tokens, so problems
//! name the entry (`notify.slack[0]`), never its text.

use std::path::Path;

use serde_saphyr::Spanned;
use url::Url;

use super::check::{interval, tcp_port, Problems};
use super::raw::{self, Scalar};
use super::{EmailConfig, Notify, NotifyOn, SmtpSecurity};
use crate::secret::{read_secret_file, Secret};

/// Events `on` may list. Everything but `start` and `success` notifies
/// anyway; listing it is allowed so a config can say what it expects.
const ON_VALUES: [&str; 6] = [
    "start",
    "success",
    "failure",
    "suspicious",
    "locked",
    "cancelled",
];

pub(super) fn notify(n: &raw::RawNotify, key: &str, p: &mut Problems) -> Notify {
    Notify {
        webhooks: urls(&n.webhooks, &format!("{key}.webhooks"), p),
        healthchecks: urls(&n.healthchecks, &format!("{key}.healthchecks"), p),
        slack: urls(&n.slack, &format!("{key}.slack"), p),
        email: n
            .email
            .as_ref()
            .and_then(|e| email(e, &format!("{key}.email"), p)),
        on: on(n, key, p),
        timeout: n
            .timeout
            .as_ref()
            .and_then(|t| interval(t, &format!("{key}.timeout"), p)),
    }
}

fn urls(list: &[Spanned<Scalar>], key: &str, p: &mut Problems) -> Vec<Secret> {
    let mut out = Vec::new();
    for (i, w) in list.iter().enumerate() {
        match Url::parse(&w.value.0) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                out.push(Secret::new(w.value.0.clone()))
            }
            _ => p.at(
                &w.referenced,
                format!("{key}[{i}]"),
                "not an http:// or https:// URL",
            ),
        }
    }
    out
}

fn on(n: &raw::RawNotify, key: &str, p: &mut Problems) -> NotifyOn {
    let mut sel = NotifyOn::default();
    if let Some(list) = &n.on {
        for (i, v) in list.value.iter().enumerate() {
            match v.value.as_str() {
                "start" => sel.start = true,
                "success" => sel.success = true,
                other if ON_VALUES.contains(&other) => {}
                other => p.at(
                    &v.referenced,
                    format!("{key}.on[{i}]"),
                    format!(
                        "unknown event `{other}`: expected one of {}",
                        ON_VALUES.join(", ")
                    ),
                ),
            }
        }
    }
    if let Some(old) = &n.on_success {
        if n.on.is_some() {
            p.at(
                &old.referenced,
                format!("{key}.on_success"),
                "on_success is the old spelling of `on: [success]`; with `on` set, list `success` there and remove on_success",
            );
        } else {
            sel.success = old.value;
        }
    }
    sel
}

fn email(e: &Spanned<raw::RawEmail>, key: &str, p: &mut Problems) -> Option<EmailConfig> {
    let r = &e.value;
    let mut ok = true;
    let security = match (r.tls.as_ref().map(|v| v.value), r.starttls.as_ref()) {
        (Some(true), Some(s)) if s.value => {
            p.at(
                &s.referenced,
                format!("{key}.starttls"),
                "set either tls (TLS from the start, port 465) or starttls, not both",
            );
            ok = false;
            SmtpSecurity::Tls
        }
        (Some(true), _) => SmtpSecurity::Tls,
        (_, Some(s)) if !s.value => SmtpSecurity::Plain,
        // STARTTLS unless asked otherwise: a password should not cross
        // the network in the clear by default.
        _ => SmtpSecurity::StartTls,
    };
    let port = match &r.port {
        None => match security {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Plain => 25,
        },
        Some(v) => tcp_port(v, key, p).unwrap_or_else(|| {
            ok = false;
            0
        }),
    };
    if r.server.value.trim().is_empty() {
        p.at(&r.server.referenced, format!("{key}.server"), "is empty");
        ok = false;
    }
    ok &= mailbox(&r.from, &format!("{key}.from"), p);
    if r.to.is_empty() {
        p.at(
            &e.referenced,
            format!("{key}.to"),
            "no recipients: list at least one address",
        );
        ok = false;
    }
    for (i, t) in r.to.iter().enumerate() {
        ok &= mailbox(t, &format!("{key}.to[{i}]"), p);
    }
    let (username, password) = credentials(r, key, p);
    if username.is_some() != password.is_some() {
        ok = false;
    }
    ok.then(|| EmailConfig {
        server: r.server.value.clone(),
        port,
        security,
        from: r.from.value.clone(),
        to: r.to.iter().map(|t| t.value.clone()).collect(),
        username,
        password,
    })
}

fn mailbox(v: &Spanned<String>, key: &str, p: &mut Problems) -> bool {
    match v.value.parse::<lettre::message::Mailbox>() {
        Ok(_) => true,
        Err(e) => {
            p.at(
                &v.referenced,
                key,
                format!("`{}` is not an email address: {e}", v.value),
            );
            false
        }
    }
}

/// `username` and `password_file` come together; the password is read now
/// so a missing file is a configuration error, not a silent mail failure.
fn credentials(r: &raw::RawEmail, key: &str, p: &mut Problems) -> (Option<String>, Option<Secret>) {
    match (&r.username, &r.password_file) {
        (None, None) => (None, None),
        (Some(u), None) => {
            p.at(
                &u.referenced,
                format!("{key}.password_file"),
                "a username needs password_file (a file holding the password; inline passwords are not accepted)",
            );
            (Some(u.value.clone()), None)
        }
        (None, Some(f)) => {
            p.at(
                &f.referenced,
                format!("{key}.username"),
                "password_file needs a username",
            );
            (None, None)
        }
        (Some(u), Some(f)) => match read_secret_file(Path::new(&f.value)) {
            Ok(s) => (Some(u.value.clone()), Some(s)),
            Err(e) => {
                p.at(
                    &f.referenced,
                    format!("{key}.password_file"),
                    format!("cannot read `{}`: {e}", f.value),
                );
                (Some(u.value.clone()), None)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, ConfigError, SmtpSecurity};

    fn config(notify: &str) -> Result<crate::config::Config, ConfigError> {
        let text = format!(
            "store:\n  url: file:///tmp/x\nnotify:\n{notify}jobs:\n  - name: j\n    sources:\n      - name: e\n        files: {{path: /tmp}}\n"
        );
        parse(&text, Path::new("c.yaml"))
    }

    fn problems(notify: &str) -> String {
        config(notify).unwrap_err().to_string()
    }

    #[test]
    fn on_selects_start_and_success_and_on_success_is_a_synonym() {
        let c = config("  on: [start, failure, suspicious]\n").unwrap();
        assert!(c.notify.on.start && !c.notify.on.success);
        let c = config("  on_success: true\n").unwrap();
        assert!(c.notify.on.success && !c.notify.on.start);
        let e = problems("  on: [success]\n  on_success: true\n");
        assert!(
            e.contains("notify.on_success") && e.contains("old spelling"),
            "{e}"
        );
        let e = problems("  on: [sucess]\n");
        assert!(
            e.contains("notify.on[0]") && e.contains("unknown event"),
            "{e}"
        );
    }

    #[test]
    fn bad_urls_are_named_by_entry_not_by_text() {
        let e = problems(
            "  healthchecks: [\"ftp://hc/SECRET-UUID\"]\n  slack: [\"not a url TOKEN\"]\n",
        );
        assert!(
            e.contains("notify.healthchecks[0]") && e.contains("notify.slack[0]"),
            "{e}"
        );
        assert!(!e.contains("SECRET-UUID") && !e.contains("TOKEN"), "{e}");
    }

    #[test]
    fn email_needs_recipients_and_a_password_file_never_an_inline_password() {
        let e = problems("  email: {server: mail, from: a@b.c, password: hunter2}\n");
        assert!(e.contains("password"), "{e}");
        let e = problems("  email: {server: mail, from: a@b.c}\n");
        assert!(e.contains("notify.email.to"), "{e}");
        let e = problems("  email: {server: mail, from: a@b.c, to: [x@y.z], username: u}\n");
        assert!(e.contains("notify.email.password_file"), "{e}");
        let e = problems("  email: {server: mail, from: nope, to: [x@y.z]}\n");
        assert!(e.contains("notify.email.from"), "{e}");
        let e = problems(
            "  email: {server: mail, from: a@b.c, to: [x@y.z], tls: true, starttls: true}\n",
        );
        assert!(e.contains("notify.email.starttls"), "{e}");
    }

    #[test]
    fn timeout_is_a_positive_duration_and_unset_by_default() {
        assert_eq!(config("  on: [start]\n").unwrap().notify.timeout, None);
        let c = config("  timeout: 1m30s\n").unwrap();
        assert_eq!(c.notify.timeout, Some(std::time::Duration::from_secs(90)));
        let e = problems("  timeout: 0s\n");
        assert!(e.contains("notify.timeout") && e.contains("zero"), "{e}");
        let e = problems("  timeout: soon\n");
        assert!(e.contains("notify.timeout"), "{e}");
    }

    #[test]
    fn email_defaults_to_starttls_on_587() {
        let c = config("  email: {server: mail, from: a@b.c, to: [x@y.z]}\n").unwrap();
        let m = c.notify.email.unwrap();
        assert_eq!((m.security, m.port), (SmtpSecurity::StartTls, 587));
        let c = config("  email: {server: mail, from: a@b.c, to: [x@y.z], tls: true}\n").unwrap();
        let m = c.notify.email.unwrap();
        assert_eq!((m.security, m.port), (SmtpSecurity::Tls, 465));
        let c = config(
            "  email: {server: mail, port: 2525, starttls: false, from: a@b.c, to: [x@y.z]}\n",
        )
        .unwrap();
        let m = c.notify.email.unwrap();
        assert_eq!((m.security, m.port), (SmtpSecurity::Plain, 2525));
    }
}
