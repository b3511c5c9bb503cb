//! Non-finite numbers at the JSON boundary. JSON has no NaN or infinity:
//! serde_json writes them as `null` and then refuses to read that `null`
//! back into an `f64`, which is how one diverged trial (`--lr 1e30`) once
//! made the journal and `best/model.json` unreadable. Writers now refuse
//! non-finite values (a diverged trial is recorded as such); readers accept
//! `null` where a number is expected, as NaN, so state written by a build
//! that did not refuse them stays readable and is treated as diverged.

use serde::{Deserialize, Deserializer};

/// Deserializes an `f64` that may be `null` (read as NaN).
pub fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Deserializes a list of `f64` whose entries may be `null` (read as NaN).
pub fn vec_f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?
        .into_iter()
        .map(|x| x.unwrap_or(f64::NAN))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "f64_or_nan")]
        x: f64,
        #[serde(deserialize_with = "vec_f64_or_nan")]
        v: Vec<f64>,
    }

    #[test]
    fn null_reads_as_nan_and_numbers_as_themselves() {
        let t: T = serde_json::from_str(r#"{"x":null,"v":[1.5,null]}"#).unwrap();
        assert!(t.x.is_nan() && t.v[0] == 1.5 && t.v[1].is_nan());
        let t: T = serde_json::from_str(r#"{"x":2,"v":[]}"#).unwrap();
        assert_eq!(t.x, 2.0);
        assert!(serde_json::from_str::<T>(r#"{"x":"a","v":[]}"#).is_err());
    }
}
