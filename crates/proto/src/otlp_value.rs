//! OTLP attribute values rendered as strings, the way the collector's `pcommon.Value.AsString`
//! does; shared by every signal that turns attributes into labels or log lines.

use crate::otlp::tonic::common::v1::{any_value, AnyValue};

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits, never an exponent.
fn format_float(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    format!("{v}")
}

/// An attribute value as a label value (pcommon `AsString`): strings as is, numbers in decimal,
/// bytes base64, arrays and maps as JSON.
pub fn any_value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => format_float(*d),
        Some(any_value::Value::BytesValue(b)) => base64(b),
        Some(other @ (any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_))) => {
            any_value_json(Some(other)).to_string()
        }
        Some(any_value::Value::StringValueStrindex(i)) => i.to_string(),
    }
}

fn any_value_json(v: Option<&any_value::Value>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        None => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(J::Null, J::Number)
        }
        Some(any_value::Value::BytesValue(b)) => J::String(base64(b)),
        Some(any_value::Value::ArrayValue(a)) => J::Array(
            a.values
                .iter()
                .map(|v| any_value_json(v.value.as_ref()))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        any_value_json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
        Some(any_value::Value::StringValueStrindex(i)) => J::from(*i),
    }
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: any_value::Value) -> AnyValue {
        AnyValue { value: Some(x) }
    }

    #[test]
    fn renders_like_pcommon() {
        assert_eq!(
            any_value_string(Some(&v(any_value::Value::DoubleValue(1e21)))),
            "1000000000000000000000"
        );
        assert_eq!(
            any_value_string(Some(&v(any_value::Value::DoubleValue(f64::INFINITY)))),
            "+Inf"
        );
        assert_eq!(
            any_value_string(Some(&v(any_value::Value::BytesValue(b"hi".to_vec())))),
            "aGk="
        );
        assert_eq!(any_value_string(None), "");
    }
}
