//! Reading JSON bodies as both ends of the API agree to.

/// `bytes` as a `T` once every number with a zero fraction (`5.0`) is written as the integer it
/// is (`5`): JSON Schema's `integer` allows both, serde's integers only the second. `None` when
/// there is no such number or `T` still does not fit; meant to be tried after the body failed
/// as it is, so that what was accepted before is read exactly as before.
pub fn with_whole_numbers<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn whole(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // Within ±2^53 every whole float is exactly an integer.
                if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                    *n = serde_json::Number::from(f as i64);
                    return true;
                }
                false
            }
            serde_json::Value::Array(items) => items.iter_mut().fold(false, |c, v| whole(v) | c),
            serde_json::Value::Object(map) => map.values_mut().fold(false, |c, v| whole(v) | c),
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if !whole(&mut value) {
        return None;
    }
    serde_json::from_value(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Size {
        rows: u16,
        cols: Option<u32>,
    }

    #[test]
    fn whole_floats_are_read_as_integers_and_fractions_are_not() {
        assert_eq!(
            with_whole_numbers::<Size>(br#"{"rows": 24.0, "cols": 80}"#),
            Some(Size {
                rows: 24,
                cols: Some(80)
            })
        );
        assert_eq!(with_whole_numbers::<Size>(br#"{"rows": 24.5}"#), None);
        assert_eq!(with_whole_numbers::<Size>(br#"{"rows": 70000.0}"#), None);
        assert_eq!(with_whole_numbers::<Size>(br#"{"rows": 24}"#), None);
    }
}
