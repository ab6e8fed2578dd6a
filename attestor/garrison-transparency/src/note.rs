//! Witness notes in the C2SP signed-note format: a body ending in a newline, a blank line,
//! then one or more signature lines `— <name> base64(key ID || signature)`.
//!
//! Each signature line is read and written by `signed_note::Signature`. The note around them is
//! split and joined here rather than by `signed_note::Note`, for two reasons: `Note` refuses
//! notes over 1 MB, and a revocation list of many entries is larger; and `Note` keeps its
//! signature lines private, while a site merges a cosignature line into a note it stores.

use signed_note::Signature;

use crate::TransparencyError;

/// At most this many signature lines, as `signed_note` allows.
const MAX_SIGNATURES: usize = 100;

/// A note split into its signed body and its signature lines.
#[derive(Debug)]
pub(crate) struct SplitNote<'a> {
    /// The body, including its final newline, without the blank line.
    pub(crate) body: &'a str,
    /// The signature lines, in order.
    pub(crate) signatures: Vec<Signature>,
}

fn malformed(reason: &'static str) -> TransparencyError {
    TransparencyError::NoteMalformed { reason }
}

/// Splits `note` into body and signature lines, refusing anything longer than `max_len`
/// bytes or not exactly in the signed-note format.
pub(crate) fn split(note: &str, max_len: usize) -> Result<SplitNote<'_>, TransparencyError> {
    if note.len() > max_len {
        return Err(TransparencyError::NoteTooLarge {
            bytes: note.len(),
            max: max_len,
        });
    }
    if note.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(malformed("a control character other than newline"));
    }
    let blank = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("no blank line before the signatures"))?;
    let (body, rest) = note
        .split_at_checked(blank + 1)
        .ok_or_else(|| malformed("no blank line before the signatures"))?;
    let lines = rest
        .strip_prefix('\n')
        .and_then(|lines| lines.strip_suffix('\n'))
        .ok_or_else(|| malformed("no signature line, or the last one lacks its newline"))?;
    if lines.split('\n').count() > MAX_SIGNATURES {
        return Err(malformed("more than 100 signature lines"));
    }
    let signatures = lines
        .split('\n')
        .map(parse_signature_line)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SplitNote { body, signatures })
}

/// A signature line by `name` (a witness or log name) with `key_id` and signature bytes.
pub(crate) fn new_signature(
    name: &str,
    key_id: u32,
    signature: Vec<u8>,
) -> Result<Signature, TransparencyError> {
    Signature::new(name.to_owned(), key_id, signature)
        .map_err(|_| malformed("the signer's name is not a valid key name"))
}

/// One signature line, without its newline.
pub(crate) fn parse_signature_line(line: &str) -> Result<Signature, TransparencyError> {
    if line.contains('\n') {
        return Err(malformed("a signature line spans more than one line"));
    }
    Signature::from_bytes(line.as_bytes()).map_err(|_| malformed("a malformed signature line"))
}

/// A signature line as text, without its newline.
pub(crate) fn signature_line(signature: &Signature) -> Result<String, TransparencyError> {
    let bytes = signature.to_bytes();
    let text = String::from_utf8(bytes).map_err(|_| malformed("a signature line is not UTF-8"))?;
    text.strip_suffix('\n')
        .map(str::to_owned)
        .ok_or_else(|| malformed("a signature line lacks its newline"))
}

/// The note of `body` signed by `signatures`.
pub(crate) fn join(body: &str, signatures: &[Signature]) -> Result<String, TransparencyError> {
    let mut note = String::with_capacity(body.len() + 1 + signatures.len() * 100);
    note.push_str(body);
    note.push('\n');
    for signature in signatures {
        note.push_str(&signature_line(signature)?);
        note.push('\n');
    }
    Ok(note)
}

/// `note` with `signature` appended, after removing any line with the same name and key ID
/// (a newer cosignature replaces an older one by the same witness key).
pub(crate) fn with_signature(
    note: SplitNote<'_>,
    signature: Signature,
) -> Result<String, TransparencyError> {
    let SplitNote {
        body,
        mut signatures,
    } = note;
    signatures.retain(|s| !(s.name() == signature.name() && s.id() == signature.id()));
    signatures.push(signature);
    if signatures.len() > MAX_SIGNATURES {
        return Err(malformed("more than 100 signature lines"));
    }
    join(body, &signatures)
}

/// The one signature line by `signer` with `key_id`: none is [`TransparencyError::SignatureMissing`],
/// several are [`TransparencyError::SignatureDuplicated`]. Lines by other keys are ignored.
pub(crate) fn signature_by<'n>(
    signatures: &'n [Signature],
    signer: &str,
    key_id: u32,
) -> Result<&'n Signature, TransparencyError> {
    let mut matching = signatures
        .iter()
        .filter(|s| s.name() == signer && s.id() == key_id);
    let first = matching
        .next()
        .ok_or_else(|| TransparencyError::SignatureMissing {
            signer: signer.to_owned(),
            key_id,
        })?;
    if matching.next().is_some() {
        return Err(TransparencyError::SignatureDuplicated {
            signer: signer.to_owned(),
            key_id,
        });
    }
    Ok(first)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LINE: &str = "— a.example/w AAAAAQID";

    #[test]
    fn a_note_splits_into_body_and_lines_and_joins_back() {
        let note = format!("line one\n\nline three\n\n{LINE}\n");
        let split = split(&note, 1000).unwrap();
        assert_eq!(split.body, "line one\n\nline three\n");
        assert_eq!(split.signatures.len(), 1);
        assert_eq!(split.signatures[0].id(), 0x0000_0001);
        assert_eq!(join(split.body, &split.signatures).unwrap(), note);
    }

    #[test]
    fn malformed_notes_are_refused() {
        for bad in [
            String::new(),
            "body\n".to_owned(),
            "body\n\n".to_owned(),
            format!("body\n\n{LINE}"),
            format!("body\n\n{LINE}\n\n"),
            format!("body\r\n\n{LINE}\n"),
            // "AAAAAQIDx" is not base64: the whole note is refused, not the line skipped.
            format!("body\n\n{LINE}\n{LINE}x\n"),
            format!("body\n\n{}\n", LINE.replace('—', "-")),
            format!("body\n\n{}\n", format!("{LINE}\n").repeat(101).trim_end()),
        ] {
            assert!(split(&bad, 1 << 20).is_err(), "{bad:?}");
        }
        assert!(matches!(
            split(&format!("body\n\n{LINE}\n"), 10),
            Err(TransparencyError::NoteTooLarge { max: 10, .. })
        ));
    }
}
