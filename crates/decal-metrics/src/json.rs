//! JSON encoding of metric values that may be non-finite.
//!
//! JSON has no literal for infinity or NaN, and `serde_json` silently writes them as `null`, which reads back
//! as "missing". An NLL is legitimately `+∞` (exact NLL of given probabilities with `p_y = 0`), so every metric
//! value that can be non-finite is written as a JSON **number when finite** and otherwise as one of the
//! **strings `"inf"`, `"-inf"` or `"NaN"`** — the same encoding as decal-report's metric records
//! (`metrics.jsonl`, `metrics.csv`), so `decal metrics --json`, `results.json` and the records agree, and
//! `decal_report::record::parse_value` reads every form back. Readers here also accept `"Infinity"`,
//! `"+inf"`, `"-Infinity"` and `"nan"` (what other tools write) and `null` as NaN (files written before this
//! encoding, where `null` stood for a non-finite value).
//!
//! Use with `#[serde(with = "crate::json::float")]` on `f64` fields and
//! `#[serde(with = "crate::json::opt_float")]` on `Option<f64>` fields.

use serde::{Deserialize, Deserializer, Serializer};

/// The string written for a non-finite value (`None` for a finite one).
pub fn non_finite_name(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("inf")
    } else if v == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

/// Parses one of the accepted non-finite spellings.
pub fn parse_non_finite(s: &str) -> Option<f64> {
    match s.trim() {
        "NaN" | "nan" => Some(f64::NAN),
        "inf" | "+inf" | "Infinity" | "+Infinity" => Some(f64::INFINITY),
        "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Repr {
    Num(f64),
    Str(String),
    Null(()),
}

fn from_repr<E: serde::de::Error>(r: Repr) -> Result<f64, E> {
    match r {
        Repr::Num(v) => Ok(v),
        Repr::Null(()) => Ok(f64::NAN),
        Repr::Str(s) => parse_non_finite(&s).ok_or_else(|| {
            E::custom(format!(
                "metric value {s:?} is neither a number nor \"inf\", \"-inf\" or \"NaN\""
            ))
        }),
    }
}

/// `#[serde(with = "…")]` for `f64`.
pub mod float {
    use super::*;

    /// Writes a number, or `"inf"` / `"-inf"` / `"NaN"`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        match non_finite_name(*v) {
            Some(name) => s.serialize_str(name),
            None => s.serialize_f64(*v),
        }
    }

    /// Reads a number, one of the non-finite strings, or `null` (NaN).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        from_repr(Repr::deserialize(d)?)
    }
}

/// `#[serde(with = "…")]` for `Option<f64>` (absent or `null` = `None`).
pub mod opt_float {
    use super::*;

    /// Writes `None` as `null`, otherwise as [`float::serialize`].
    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(v) => float::serialize(v, s),
        }
    }

    /// Reads `null` as `None`, otherwise as [`float::deserialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<Repr>::deserialize(d)? {
            None | Some(Repr::Null(())) => Ok(None),
            Some(r) => from_repr(r).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct T {
        #[serde(with = "super::float")]
        a: f64,
        #[serde(with = "super::opt_float", default)]
        b: Option<f64>,
    }

    #[test]
    fn non_finite_values_round_trip_as_strings() {
        for (v, text) in [
            (f64::INFINITY, r#"{"a":"inf","b":"-inf"}"#),
            (0.25, r#"{"a":0.25,"b":"-inf"}"#),
        ] {
            let t = T {
                a: v,
                b: Some(f64::NEG_INFINITY),
            };
            let s = serde_json::to_string(&t).unwrap();
            assert_eq!(s, text);
            assert_eq!(serde_json::from_str::<T>(&s).unwrap(), t);
        }
        let nan = serde_json::to_string(&T {
            a: f64::NAN,
            b: None,
        })
        .unwrap();
        assert_eq!(nan, r#"{"a":"NaN","b":null}"#);
        assert!(serde_json::from_str::<T>(&nan).unwrap().a.is_nan());
        for text in [r#"{"a":"Infinity"}"#, r#"{"a":"+inf"}"#] {
            assert_eq!(
                serde_json::from_str::<T>(text).unwrap().a,
                f64::INFINITY,
                "{text}"
            );
        }
        // `null` (what serde_json wrote for a non-finite value before) reads as NaN, not as an error.
        assert!(serde_json::from_str::<T>(r#"{"a":null}"#)
            .unwrap()
            .a
            .is_nan());
        let err = serde_json::from_str::<T>(r#"{"a":"lots"}"#).unwrap_err();
        assert!(err.to_string().contains("lots"), "{err}");
    }
}
