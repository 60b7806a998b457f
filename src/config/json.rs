//! Decoding JSON into fixed structs the way Go's `encoding/json` did for the original.
//!
//! The original read its files with `json.Unmarshal` into Go structs, and existing files rely on its
//! rules, which serde's derive does not follow:
//! - object keys match field names case-insensitively (`uid`, `Uid` and `UID` are one key), with Go's
//!   folding, in which the Kelvin sign `K` (U+212A) equals `k` and the long s `ſ` (U+017F) equals `s`;
//! - members are applied in document order, so for a duplicate key the last one wins, and a duplicate
//!   object is merged into the first (Go decodes into the existing struct value);
//! - `null` leaves a scalar or struct field as it is and empties a list;
//! - a number must be an integer literal in range for an unsigned field (`3.0` and `-1` are errors);
//! - unknown keys are ignored (we also report them, so a misspelt key does not go unnoticed).
//!
//! It knows nothing of the config files themselves: [`super::file`] describes their fields with
//! [`Members::field`].

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON document that keeps every object member in document order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// A JSON number as the parser classified it: integer literals stay exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Unsigned(u64),
    Negative(i64),
    /// A literal with a fraction or exponent, or an integer beyond 64 bits.
    Float(f64),
}

impl Json {
    /// Parses a whole document; trailing data after the value is an error, as in Go.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Json, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The JSON type's name as an error message uses it.
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// A short rendering of the value for error messages (long strings and containers are elided).
    fn excerpt(&self) -> String {
        match self {
            Json::Null => "null".to_owned(),
            Json::Bool(b) => b.to_string(),
            Json::Number(n) => n.to_string(),
            Json::String(s) if s.chars().count() > 40 => {
                format!("{:?}…", s.chars().take(40).collect::<String>())
            }
            Json::String(s) => format!("{s:?}"),
            Json::Array(_) => "[…]".to_owned(),
            Json::Object(_) => "{…}".to_owned(),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Unsigned(n) => write!(f, "{n}"),
            Number::Negative(n) => write!(f, "{n}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(Number::Unsigned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(match u64::try_from(v) {
            Ok(u) => Number::Unsigned(u),
            Err(_) => Number::Negative(v),
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Number(Number::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Json>()? {
            members.push(member);
        }
        Ok(Json::Object(members))
    }
}

/// A value that could not be decoded into its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// The key path of the value, e.g. `VppBridgeLoop_InstallRoutes.IPv4` or `IPv4ArpResponseRanges[1]`;
    /// empty for the document itself.
    pub key: String,
    pub reason: String,
}

/// What decoding one document noticed besides errors.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// Key paths of members that matched no field, in document order.
    pub unknown_keys: Vec<String>,
    /// Values that a lenient field ([`Lenient`]) skipped, with the reason.
    pub ignored: Vec<DecodeError>,
    /// The Go backing array of each list field decoded so far, by folded key path.
    backings: HashMap<String, Vec<String>>,
}

/// Decodes a whole document into `target`, which starts from its zero value as in Go.
pub(crate) fn decode_document<T: GoDecode>(
    doc: &Json,
    target: &mut T,
) -> Result<Decoded, DecodeError> {
    let mut decoded = Decoded::default();
    target.decode_into(doc, "", &mut decoded)?;
    Ok(decoded)
}

/// A field type that decodes like its Go counterpart.
pub(crate) trait GoDecode {
    /// Decodes `value` (found at key path `key`) into `self`.
    fn decode_into(
        &mut self,
        value: &Json,
        key: &str,
        decoded: &mut Decoded,
    ) -> Result<(), DecodeError>;
}

fn mismatch(key: &str, expected: &str, value: &Json) -> DecodeError {
    DecodeError {
        key: key.to_owned(),
        reason: format!(
            "expected {expected}, found {} {}",
            value.kind(),
            value.excerpt()
        ),
    }
}

impl GoDecode for u32 {
    fn decode_into(&mut self, value: &Json, key: &str, _: &mut Decoded) -> Result<(), DecodeError> {
        match value {
            Json::Null => Ok(()),
            Json::Number(Number::Unsigned(n)) => match u32::try_from(*n) {
                Ok(n) => {
                    *self = n;
                    Ok(())
                }
                Err(_) => Err(DecodeError {
                    key: key.to_owned(),
                    reason: format!(
                        "{n} is out of range for an unsigned 32-bit integer (at most {})",
                        u32::MAX
                    ),
                }),
            },
            Json::Number(n) => Err(DecodeError {
                key: key.to_owned(),
                reason: format!("expected an unsigned 32-bit integer, found {n}"),
            }),
            other => Err(mismatch(key, "an unsigned 32-bit integer", other)),
        }
    }
}

impl GoDecode for bool {
    fn decode_into(&mut self, value: &Json, key: &str, _: &mut Decoded) -> Result<(), DecodeError> {
        match value {
            Json::Null => Ok(()),
            Json::Bool(b) => {
                *self = *b;
                Ok(())
            }
            other => Err(mismatch(key, "true or false", other)),
        }
    }
}

impl GoDecode for String {
    fn decode_into(&mut self, value: &Json, key: &str, _: &mut Decoded) -> Result<(), DecodeError> {
        decode_string(self, value, key)
    }
}

fn decode_string(target: &mut String, value: &Json, key: &str) -> Result<(), DecodeError> {
    match value {
        Json::Null => Ok(()),
        Json::String(s) => {
            s.clone_into(target);
            Ok(())
        }
        other => Err(mismatch(key, "a string", other)),
    }
}

/// A list of strings decodes like a Go slice, including a quirk that shows with duplicate keys: Go
/// decodes array elements into the slice's existing backing array, so a `null` element (which leaves
/// its target unchanged) keeps the string that an earlier duplicate put there, even one beyond the
/// current length but within the capacity. The backing array is kept in [`Decoded`] per field.
impl GoDecode for Vec<String> {
    fn decode_into(
        &mut self,
        value: &Json,
        key: &str,
        decoded: &mut Decoded,
    ) -> Result<(), DecodeError> {
        let items = match value {
            Json::Null => {
                self.clear();
                decoded.backings.remove(&go_fold(key));
                return Ok(());
            }
            Json::Array(items) => items,
            other => return Err(mismatch(key, "an array", other)),
        };
        let backing = decoded
            .backings
            .entry(go_fold(key))
            .or_insert_with(|| self.clone());
        for (i, item) in items.iter().enumerate() {
            if i == backing.len() {
                // Go grows a full slice to 1.5 times its capacity (at least 4), zero-filled.
                backing.resize((i + i / 2).max(4), String::new());
            }
            decode_string(&mut backing[i], item, &format!("{key}[{i}]"))?;
        }
        if items.is_empty() {
            backing.clear();
        }
        self.clear();
        self.extend_from_slice(&backing[..items.len()]);
        Ok(())
    }
}

/// Decodes a JSON object into a struct: `each` is called once per member, in document order, and
/// returns whether one of its [`Members::field`] calls took the member.
pub(crate) fn decode_struct(
    value: &Json,
    key: &str,
    decoded: &mut Decoded,
    mut each: impl FnMut(&mut Members<'_>) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let members = match value {
        Json::Null => return Ok(()),
        Json::Object(members) => members,
        other => return Err(mismatch(key, "an object", other)),
    };
    for (name, member_value) in members {
        let path = if key.is_empty() {
            name.clone()
        } else {
            format!("{key}.{name}")
        };
        let mut member = Members {
            name,
            value: member_value,
            path: &path,
            decoded,
        };
        if !each(&mut member)? {
            member.decoded.unknown_keys.push(path.clone());
        }
    }
    Ok(())
}

/// One object member being matched against a struct's fields.
pub(crate) struct Members<'a> {
    name: &'a str,
    value: &'a Json,
    path: &'a str,
    decoded: &'a mut Decoded,
}

impl Members<'_> {
    /// If the member's key is `field_name` (case-insensitively), decodes its value into `target` and
    /// returns `true`.
    pub(crate) fn field<T: GoDecode>(
        &mut self,
        field_name: &str,
        target: &mut T,
    ) -> Result<bool, DecodeError> {
        if !go_fold_eq(field_name, self.name) {
            return Ok(false);
        }
        target.decode_into(self.value, self.path, self.decoded)?;
        Ok(true)
    }
}

/// A string field that, unlike the others, skips a value of another type (recording it in
/// [`Decoded::ignored`]) instead of failing: for keys the original never read, such as an alias.
pub(crate) struct Lenient<'a>(pub &'a mut String);

impl GoDecode for Lenient<'_> {
    fn decode_into(
        &mut self,
        value: &Json,
        key: &str,
        decoded: &mut Decoded,
    ) -> Result<(), DecodeError> {
        if let Err(err) = decode_string(self.0, value, key) {
            decoded.ignored.push(err);
        }
        Ok(())
    }
}

/// A string field whose value is a secret: a type error names the key and the type found, never the
/// value.
pub(crate) struct Secret<'a>(pub &'a mut String);

impl GoDecode for Secret<'_> {
    fn decode_into(&mut self, value: &Json, key: &str, _: &mut Decoded) -> Result<(), DecodeError> {
        decode_string(self.0, value, key).map_err(|err| DecodeError {
            reason: format!(
                "expected a string, found {} (value not shown)",
                value.kind()
            ),
            ..err
        })
    }
}

/// Go's case-insensitive key match against an ASCII field name. Go prefers an exact match, then a
/// folded one; our structs have no two field names that fold alike, so a folded match suffices.
pub(crate) fn go_fold_eq(field_name: &str, key: &str) -> bool {
    field_name
        .chars()
        .map(fold_char)
        .eq(key.chars().map(fold_char))
}

/// A key folded as [`go_fold_eq`] compares it.
fn go_fold(key: &str) -> String {
    key.chars().map(fold_char).collect()
}

fn fold_char(c: char) -> char {
    match c {
        '\u{212A}' => 'k',
        '\u{017F}' => 's',
        c => c.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Inner {
        a: bool,
        b: bool,
    }

    impl GoDecode for Inner {
        fn decode_into(
            &mut self,
            value: &Json,
            key: &str,
            decoded: &mut Decoded,
        ) -> Result<(), DecodeError> {
            decode_struct(value, key, decoded, |m| {
                Ok(m.field("A", &mut self.a)? || m.field("b-b", &mut self.b)?)
            })
        }
    }

    #[derive(Debug, Default, PartialEq)]
    struct Outer {
        id: u32,
        name: String,
        list: Vec<String>,
        inner: Inner,
    }

    impl GoDecode for Outer {
        fn decode_into(
            &mut self,
            value: &Json,
            key: &str,
            decoded: &mut Decoded,
        ) -> Result<(), DecodeError> {
            decode_struct(value, key, decoded, |m| {
                Ok(m.field("Id", &mut self.id)?
                    || m.field("name", &mut self.name)?
                    || m.field("list", &mut self.list)?
                    || m.field("Inner", &mut self.inner)?)
            })
        }
    }

    fn decode(text: &str) -> Result<(Outer, Vec<String>), DecodeError> {
        let doc = Json::parse(text.as_bytes()).expect("test documents are valid JSON");
        let mut outer = Outer::default();
        let decoded = decode_document(&doc, &mut outer)?;
        Ok((outer, decoded.unknown_keys))
    }

    #[test]
    fn keys_match_case_insensitively_with_go_folding() {
        let (o, unknown) =
            decode(r#"{"ID": 7, "NAME": "x", "inner": {"a": true, "B-B": true}}"#).unwrap();
        assert_eq!(
            (o.id, o.name.as_str(), o.inner),
            (7, "x", Inner { a: true, b: true })
        );
        assert!(unknown.is_empty());
        // U+017F (long s) folds to `s`, U+212A (Kelvin) to `k`: Go accepts both.
        assert!(go_fold_eq("secret", "\u{017F}ecret"));
        assert!(go_fold_eq("Kind", "\u{212A}IND"));
        assert!(!go_fold_eq("uid", "uid "));
        assert!(!go_fold_eq("IPv4", "IPv4\u{0}"));
    }

    #[test]
    fn last_duplicate_wins_and_duplicate_objects_merge() {
        let (o, _) =
            decode(r#"{"id": 1, "ID": 2, "id": 3, "inner": {"a": true}, "Inner": {"b-b": true}}"#)
                .unwrap();
        assert_eq!(o.id, 3);
        assert_eq!(o.inner, Inner { a: true, b: true });
        let (o, _) = decode(r#"{"list": ["a", "b"], "LIST": ["c"]}"#).unwrap();
        assert_eq!(o.list, ["c"]);
    }

    #[test]
    fn null_keeps_scalars_and_clears_lists() {
        let (o, _) =
            decode(r#"{"id": 5, "id": null, "name": null, "list": ["a"], "list": null}"#).unwrap();
        assert_eq!((o.id, o.name.as_str(), o.list.len()), (5, "", 0));
        let (o, _) = decode("null").unwrap();
        assert_eq!(o, Outer::default());
    }

    #[test]
    fn null_list_elements_keep_what_an_earlier_duplicate_put_there() {
        // Go decodes into the existing backing array, and `null` leaves an element unchanged.
        let (o, _) = decode(r#"{"list": ["a", "b"], "LIST": [null, "c"]}"#).unwrap();
        assert_eq!(o.list, ["a", "c"]);
        // Even past the current length, within the capacity (4 after the first growth).
        let (o, _) =
            decode(r#"{"list": ["a", "b", "c"], "list": ["x"], "list": [null, null, null]}"#)
                .unwrap();
        assert_eq!(o.list, ["x", "b", "c"]);
        // An empty array or null drops the backing array.
        let (o, _) = decode(r#"{"list": ["a"], "list": [], "list": [null]}"#).unwrap();
        assert_eq!(o.list, [""]);
        let (o, _) = decode(r#"{"list": ["a"], "list": null, "list": [null]}"#).unwrap();
        assert_eq!(o.list, [""]);
        // Growth beyond the capacity starts from zero values.
        let (o, _) =
            decode(r#"{"list": ["a", "b", "c", "d"], "list": [null, null, null, null, null]}"#)
                .unwrap();
        assert_eq!(o.list, ["a", "b", "c", "d", ""]);
    }

    #[test]
    fn secret_fields_never_show_their_value() {
        let mut secret = String::new();
        let doc = Json::parse(br#"{"s": 123456}"#).unwrap();
        let err = decode_struct(&doc, "", &mut Decoded::default(), |m| {
            m.field("s", &mut Secret(&mut secret))
        })
        .unwrap_err();
        assert_eq!(
            err.reason,
            "expected a string, found a number (value not shown)"
        );
    }

    #[test]
    fn lenient_fields_skip_values_of_another_type() {
        let mut alias = String::from("kept");
        let mut decoded = Decoded::default();
        let doc = Json::parse(br#"{"alias": 5}"#).unwrap();
        decode_struct(&doc, "", &mut decoded, |m| {
            m.field("alias", &mut Lenient(&mut alias))
        })
        .unwrap();
        assert_eq!(alias, "kept");
        assert_eq!(decoded.ignored[0].key, "alias");
        assert_eq!(
            decoded.ignored[0].reason,
            "expected a string, found a number 5"
        );
    }

    #[test]
    fn unknown_keys_are_reported_with_their_path() {
        let (_, unknown) = decode(r#"{"idd": 1, "inner": {"c": 1}}"#).unwrap();
        assert_eq!(unknown, ["idd", "inner.c"]);
    }

    #[test]
    fn wrong_types_name_the_key_and_the_value() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"id": "3"}"#,
                "id",
                r#"expected an unsigned 32-bit integer, found a string "3""#,
            ),
            (
                r#"{"id": 3.0}"#,
                "id",
                "expected an unsigned 32-bit integer, found 3",
            ),
            (
                r#"{"id": 1e2}"#,
                "id",
                "expected an unsigned 32-bit integer, found 100",
            ),
            (
                r#"{"id": -1}"#,
                "id",
                "expected an unsigned 32-bit integer, found -1",
            ),
            (
                r#"{"id": 4294967296}"#,
                "id",
                "4294967296 is out of range for an unsigned 32-bit integer",
            ),
            (
                r#"{"name": 5}"#,
                "name",
                "expected a string, found a number 5",
            ),
            (
                r#"{"list": "a"}"#,
                "list",
                r#"expected an array, found a string "a""#,
            ),
            (
                r#"{"list": ["a", 2]}"#,
                "list[1]",
                "expected a string, found a number 2",
            ),
            (
                r#"{"Inner": {"A": "yes"}}"#,
                "Inner.A",
                r#"expected true or false, found a string "yes""#,
            ),
            (
                r#"{"inner": []}"#,
                "inner",
                "expected an object, found an array […]",
            ),
            ("[1]", "", "expected an object, found an array"),
        ];
        for (text, key, reason) in cases {
            let err = decode(text).expect_err(text);
            assert_eq!(err.key, *key, "{text}");
            assert!(err.reason.starts_with(reason), "{text}: {}", err.reason);
        }
    }

    #[test]
    fn trailing_data_and_empty_input_are_syntax_errors() {
        assert!(Json::parse(b"{} {}").is_err());
        assert!(Json::parse(b"").is_err());
        assert!(Json::parse(b"{\"a\":1,}").is_err());
    }
}
