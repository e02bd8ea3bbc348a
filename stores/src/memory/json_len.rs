//! Lengths of session data as JSON, byte for byte as serde_json writes it
//! (what [`sessionkit::limits::serialized_len`] counts), computed without
//! writing the JSON.
//!
//! Every record keeps its data's JSON length (see [`super::record`]), so a
//! patch checks its size limit by adding what it writes and subtracting
//! what it replaces, instead of serializing the whole session.

/// `null`.
pub(super) const NULL: usize = 4;
/// `true`.
pub(super) const TRUE: usize = 4;
/// `false`.
pub(super) const FALSE: usize = 5;

/// An array or object of `items` elements, without the elements: the two
/// brackets and the commas between elements.
pub(super) fn container(items: usize) -> usize {
    2 + items.saturating_sub(1)
}

/// A member of an object, `"key":value`, whose value is `value` bytes long.
pub(super) fn member(key: &str, value: usize) -> usize {
    string(key) + 1 + value
}

/// A string, with its quotes and escapes.
pub(super) fn string(text: &str) -> usize {
    2 + text.len() + escapes(text)
}

/// How many bytes escaping adds to `text`: serde_json writes `"` and `\` as
/// `\"` and `\\`, the control characters with a short form (`\b`, `\t`,
/// `\n`, `\f`, `\r`) as two bytes and the other ones below 0x20 as `\u00XX`;
/// everything else, non-ASCII included, as it is.
fn escapes(text: &str) -> usize {
    // Most strings need no escape: one counting pass (which the compiler
    // turns into vector instructions) settles those.
    let bytes = text.as_bytes();
    if bytes.iter().filter(|&&byte| byte < 0x20 || byte == b'"' || byte == b'\\').count() == 0 {
        return 0;
    }
    bytes
        .iter()
        .map(|&byte| match byte {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 1,
            0x00..=0x1f => 5,
            _ => 0,
        })
        .sum()
}

/// A float, as serde_json formats it (shortest round-trip form).
pub(super) fn float(value: f64) -> usize {
    // Bounded below the largest length, which `serialized_len` answers for
    // what cannot serialize: the lengths here are summed, and must still
    // make any size limit refuse without overflowing.
    sessionkit::limits::serialized_len(&value).min(usize::MAX / 2)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strings_count_their_escapes_like_serde_json() {
        let samples = [
            "",
            "plain",
            "\"quoted\"",
            "back\\slash",
            "\u{8}\t\n\u{c}\r",
            "\u{0}\u{1}\u{1f}\u{7f}",
            "ключ 😀",
            "/not escaped/",
        ];
        for text in samples {
            let expected = serde_json::to_string(text).map(|json| json.len()).unwrap_or_default();
            assert_eq!(string(text), expected, "{text:?}");
        }
        let every_byte: String = (0u8..=0x7f).map(char::from).collect();
        assert_eq!(string(&every_byte), serde_json::to_string(&every_byte).map(|j| j.len()).unwrap_or_default());
    }

    #[test]
    fn floats_and_containers_measure_like_serde_json() {
        for float in [0.0, -0.0, 1.5, 2.0, 5e-324, -1.7976931348623157e308, 1e300, 0.1] {
            assert_eq!(float_len(float), json!(float).to_string().len(), "{float}");
        }
        for items in [0, 1, 2, 10] {
            let array = serde_json::Value::Array(vec![json!(null); items]);
            assert_eq!(container(items) + items * NULL, array.to_string().len());
        }
        assert_eq!(member("k\"", 4), r#""k\"":null"#.len());
    }

    fn float_len(value: f64) -> usize {
        float(value)
    }
}
