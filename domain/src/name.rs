//! Names of folders, files and shares: validation and the normalised key that
//! sibling uniqueness is claimed on.

use unicode_normalization::UnicodeNormalization;

/// Checks a file or folder name: 1–255 characters, no `/`, no NUL, not `.`/`..`.
pub fn validate_item_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err("name must not be empty".into());
    }
    if chars > 255 {
        return Err("name must be at most 255 characters".into());
    }
    if name.contains('/') || name.contains('\0') {
        return Err("name must not contain '/' or NUL".into());
    }
    if name == "." || name == ".." {
        return Err("name must not be '.' or '..'".into());
    }
    Ok(())
}

/// The key sibling uniqueness is enforced on: NFC, then case-folded.
pub fn name_key(name: &str) -> String {
    let nfc: String = name.nfc().collect();
    nfc.to_lowercase()
}

/// The stored form of a name: NFC.
pub fn normalize(name: &str) -> String {
    name.nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_case_and_normalisation_form() {
        assert_eq!(name_key("Report.PDF"), name_key("report.pdf"));
        // "é" precomposed vs "e" + combining acute.
        assert_eq!(name_key("caf\u{e9}"), name_key("cafe\u{301}"));
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(validate_item_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_item_name(&"x".repeat(256)).is_err());
        assert!(validate_item_name(&"x".repeat(255)).is_ok());
    }
}
