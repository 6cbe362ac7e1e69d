//! Proto enum values as the verbs print and take them: the name without its
//! prefix, in lower case (`SNMP_AUTH_PROTOCOL_SHA256` ⇄ `sha256`).

/// A proto enum value's name without its prefix, in lower case.
pub fn enum_text(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// The enum value named `text` (any case, `-` for `_`, with or without the
/// prefix); the error lists the words accepted. `UNSPECIFIED` is never one.
pub fn parse_enum<T: Copy + TryFrom<i32>>(
    what: &str,
    text: &str,
    prefix: &str,
    from_name: fn(&str) -> Option<T>,
    name_of: fn(&T) -> &'static str,
) -> Result<T, String> {
    let upper = text.trim().to_ascii_uppercase().replace('-', "_");
    let full = if upper.starts_with(prefix) {
        upper
    } else {
        format!("{prefix}{upper}")
    };
    if !full.ends_with("_UNSPECIFIED")
        && let Some(value) = from_name(&full)
    {
        return Ok(value);
    }
    // Every value the proto defines (prost enums number them densely from 0).
    let words: Vec<String> = (1..64)
        .map_while(|number| T::try_from(number).ok())
        .map(|value| enum_text(name_of(&value), prefix))
        .collect();
    Err(format!(
        "unknown {what} {text:?}: one of {}",
        words.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use netward_shared::proto::v1::SnmpAuthProtocol;

    use super::*;

    fn auth(text: &str) -> Result<SnmpAuthProtocol, String> {
        parse_enum(
            "auth protocol",
            text,
            "SNMP_AUTH_PROTOCOL_",
            SnmpAuthProtocol::from_str_name,
            SnmpAuthProtocol::as_str_name,
        )
    }

    #[test]
    fn words_name_enum_values_both_ways() {
        assert_eq!(auth("sha256"), Ok(SnmpAuthProtocol::Sha256));
        assert_eq!(auth("SNMP_AUTH_PROTOCOL_NONE"), Ok(SnmpAuthProtocol::None));
        assert_eq!(
            auth("unspecified").unwrap_err(),
            "unknown auth protocol \"unspecified\": one of none, md5, sha1, sha224, sha256, sha384, sha512"
        );
        assert_eq!(
            enum_text("SNMP_AUTH_PROTOCOL_SHA256", "SNMP_AUTH_PROTOCOL_"),
            "sha256"
        );
    }
}
