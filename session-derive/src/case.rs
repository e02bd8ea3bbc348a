//! `rename_all`: serde's casing rules, applied to field names.
//!
//! The names and the output match serde's `rename_all` for struct fields, so
//! a struct that is both `Serialize` and `SessionData` can use one spelling
//! everywhere.

/// A casing accepted by `#[session(rename_all = "...")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RenameRule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

/// Every accepted spelling, in the order the error message lists them.
const RULES: &[(&str, RenameRule)] = &[
    ("lowercase", RenameRule::Lower),
    ("UPPERCASE", RenameRule::Upper),
    ("PascalCase", RenameRule::Pascal),
    ("camelCase", RenameRule::Camel),
    ("snake_case", RenameRule::Snake),
    ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnake),
    ("kebab-case", RenameRule::Kebab),
    ("SCREAMING-KEBAB-CASE", RenameRule::ScreamingKebab),
];

impl RenameRule {
    /// The rule named `name`, spelled exactly as serde spells it.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        RULES.iter().find(|(known, _)| *known == name).map(|(_, rule)| *rule)
    }

    /// The accepted names, quoted and comma-separated, for error messages.
    pub(crate) fn expected() -> String {
        RULES.iter().map(|(name, _)| format!("\"{name}\"")).collect::<Vec<_>>().join(", ")
    }

    /// Applies the rule to a field name, which Rust style writes in
    /// snake_case (serde makes the same assumption).
    pub(crate) fn apply(self, field: &str) -> String {
        match self {
            Self::Lower | Self::Snake => field.to_owned(),
            Self::Upper | Self::ScreamingSnake => field.to_ascii_uppercase(),
            Self::Pascal => pascal(field),
            Self::Camel => {
                let pascal = pascal(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
            Self::Kebab => field.replace('_', "-"),
            Self::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

fn pascal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut capitalize = true;
    for ch in field.chars() {
        if ch == '_' {
            capitalize = true;
        } else if capitalize {
            out.push(ch.to_ascii_uppercase());
            capitalize = false;
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_matches_serde_on_a_multi_word_field() {
        let cases = [
            ("lowercase", "user_id_2"),
            ("UPPERCASE", "USER_ID_2"),
            ("PascalCase", "UserId2"),
            ("camelCase", "userId2"),
            ("snake_case", "user_id_2"),
            ("SCREAMING_SNAKE_CASE", "USER_ID_2"),
            ("kebab-case", "user-id-2"),
            ("SCREAMING-KEBAB-CASE", "USER-ID-2"),
        ];
        for (name, expected) in cases {
            let rule = RenameRule::from_name(name).expect(name);
            assert_eq!(rule.apply("user_id_2"), expected, "{name}");
        }
    }

    #[test]
    fn single_words_and_empty_names_survive() {
        assert_eq!(RenameRule::Camel.apply("items"), "items");
        assert_eq!(RenameRule::Pascal.apply("items"), "Items");
        assert_eq!(RenameRule::Camel.apply(""), "");
    }

    #[test]
    fn names_are_case_sensitive_as_in_serde() {
        assert_eq!(RenameRule::from_name("camelcase"), None);
        assert_eq!(RenameRule::from_name("Snake_Case"), None);
        assert!(RenameRule::expected().contains("\"SCREAMING-KEBAB-CASE\""));
    }
}
