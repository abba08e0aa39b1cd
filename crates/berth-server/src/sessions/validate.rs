//! Checks on what a create request asks for, before anything is written or started.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::SessionError;

const MAX_LABELS: usize = 32;
const MAX_ENV: usize = 128;
const MAX_ENV_VALUE: usize = 32 * 1024;
const MAX_LABEL_VALUE: usize = 256;

/// Environment variable names the control plane sets itself and users may not.
const RESERVED_ENV_PREFIX: &str = "BERTH_";

pub fn env(env: &BTreeMap<String, String>) -> Result<(), SessionError> {
    let invalid = |msg: String| Err(SessionError::InvalidRequest(msg));
    if env.len() > MAX_ENV {
        return invalid(format!(
            "at most {MAX_ENV} environment variables are allowed"
        ));
    }
    for (name, value) in env {
        let mut chars = name.chars();
        let well_formed = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return invalid(format!(
                "environment variable name {name:?} is invalid: use letters, digits and _, not starting with a digit"
            ));
        }
        if name.starts_with(RESERVED_ENV_PREFIX) {
            return invalid(format!(
                "environment variable {name:?}: names starting with BERTH_ are reserved"
            ));
        }
        if value.len() > MAX_ENV_VALUE || value.contains('\0') {
            return invalid(format!(
                "environment variable {name:?}: value too long or contains NUL"
            ));
        }
    }
    Ok(())
}

pub fn labels(labels: &BTreeMap<String, String>) -> Result<(), SessionError> {
    let invalid = |msg: String| Err(SessionError::InvalidRequest(msg));
    if labels.len() > MAX_LABELS {
        return invalid(format!("at most {MAX_LABELS} labels are allowed"));
    }
    for (key, value) in labels {
        let well_formed = (1..=63).contains(&key.len())
            && key.starts_with(|c: char| c.is_ascii_alphanumeric())
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
        if !well_formed {
            return invalid(format!(
                "label key {key:?} is invalid: 1 to 63 of letters, digits, '.', '_', '-', '/', starting with a letter or digit"
            ));
        }
        if value.len() > MAX_LABEL_VALUE {
            return invalid(format!(
                "label {key:?}: value longer than {MAX_LABEL_VALUE} bytes"
            ));
        }
    }
    Ok(())
}

/// `seconds` after `from`, checked: a TTL nobody could mean (past what a date holds) is an
/// error for the caller, never an overflow in the session manager.
pub fn after(from: DateTime<Utc>, seconds: u64) -> Result<DateTime<Utc>, SessionError> {
    i64::try_from(seconds)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|delta| from.checked_add_signed(delta))
        .ok_or_else(|| SessionError::InvalidTtl(format!("{seconds} seconds is out of range")))
}

/// Parses `k=v` label filters from query strings.
pub fn label_filter(raw: &[String]) -> Result<Vec<(String, String)>, SessionError> {
    raw.iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(SessionError::InvalidRequest(format!(
                "label filter {pair:?} must look like key=value"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_names_are_checked() {
        assert!(env(&map(&[("PATH_EXTRA", "x"), ("_a1", "")])).is_ok());
        assert!(env(&map(&[("1ABC", "x")])).is_err());
        assert!(env(&map(&[("A-B", "x")])).is_err());
        assert!(env(&map(&[("BERTH_AGENT_SECRET", "x")])).is_err());
    }

    #[test]
    fn label_keys_are_checked() {
        assert!(labels(&map(&[("course", "docker-101"), ("example.com/team", "a")])).is_ok());
        assert!(labels(&map(&[("", "x")])).is_err());
        assert!(labels(&map(&[("has space", "x")])).is_err());
    }

    #[test]
    fn durations_past_what_a_date_holds_are_errors() {
        let now = Utc::now();
        assert_eq!(after(now, 60).unwrap(), now + TimeDelta::seconds(60));
        for huge in [10_000_000_000_000, i64::MAX as u64, u64::MAX] {
            assert!(matches!(after(now, huge), Err(SessionError::InvalidTtl(_))));
        }
    }

    #[test]
    fn label_filters_need_an_equals_sign() {
        assert_eq!(
            label_filter(&["a=b=c".into()]).unwrap(),
            [("a".into(), "b=c".into())]
        );
        assert!(label_filter(&["novalue".into()]).is_err());
    }
}
