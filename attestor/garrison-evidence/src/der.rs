//! The few DER encodings we produce: SubjectPublicKeyInfo for the EK hash and ECDSA
//! signatures for ring's ASN.1 verifiers.

use crate::public::strip_leading_zeros;

/// A DER INTEGER holding the unsigned big-endian `bytes`.
pub(crate) fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let significant = strip_leading_zeros(bytes);
    let mut content = Vec::with_capacity(significant.len().saturating_add(1));
    if significant.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(significant);
    der_tlv(0x02, &content)
}

/// A DER TLV.
pub(crate) fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let len_bytes = (len as u64).to_be_bytes();
        let significant = strip_leading_zeros(&len_bytes);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}
