//! Size-prefixed TPM buffers and DER lengths: the little byte plumbing tss-esapi leaves out.

use tss_esapi::{structures::Public, traits::Marshall};

use crate::TpmError;

/// Marshals `public` as TPM2B_PUBLIC: a big-endian `u16` size, then TPMT_PUBLIC.
pub(crate) fn tpm2b_public(public: &Public) -> Result<Vec<u8>, TpmError> {
    let tpmt = public
        .marshall()
        .map_err(|source| TpmError::MarshalPublic { source })?;
    prefixed(&tpmt).ok_or(TpmError::MarshalPublic {
        source: tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::WrongParamSize),
    })
}

/// `bytes` with a big-endian `u16` length in front, or `None` if it does not fit.
pub(crate) fn prefixed(bytes: &[u8]) -> Option<Vec<u8>> {
    let size = u16::try_from(bytes.len()).ok()?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(bytes);
    Some(out)
}

/// Splits a TPM2B off the front of `bytes`: `(contents, rest)`.
pub(crate) fn split_tpm2b(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (size, rest) = bytes.split_first_chunk::<2>()?;
    let size = usize::from(u16::from_be_bytes(*size));
    if rest.len() < size {
        return None;
    }
    Some(rest.split_at(size))
}

/// Total length (header + content) of the DER element at the start of `bytes`, if it is a
/// SEQUENCE with a definite length. Used to cut zero padding after an EK certificate.
pub(crate) fn der_sequence_len(bytes: &[u8]) -> Option<usize> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if tag != 0x30 {
        return None;
    }
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return None; // indefinite length, or longer than any NV index
    }
    let len_bytes = rest.get(..count)?;
    let content = len_bytes
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    content.checked_add(2 + count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der_sequence_len(&[0x30, 0x03, 1, 2, 3, 0, 0]), Some(5));
        assert_eq!(der_sequence_len(&[0x30, 0x82, 0x01, 0x00]), Some(260));
        assert_eq!(der_sequence_len(&[0x30, 0x81, 0x80]), Some(131));
        assert_eq!(der_sequence_len(&[0x31, 0x03]), None);
        assert_eq!(der_sequence_len(&[0x30, 0x80]), None);
        assert_eq!(der_sequence_len(&[0x30, 0x82, 0x01]), None);
        assert_eq!(der_sequence_len(&[0xff; 0]), None);
    }

    #[test]
    fn tpm2b_round_trip() {
        let wrapped = prefixed(&[1, 2, 3]).unwrap();
        assert_eq!(wrapped, [0, 3, 1, 2, 3]);
        assert_eq!(split_tpm2b(&wrapped), Some((&[1u8, 2, 3][..], &[][..])));
        assert_eq!(split_tpm2b(&[0, 4, 1, 2, 3]), None);
        assert_eq!(split_tpm2b(&[0]), None);
    }
}
