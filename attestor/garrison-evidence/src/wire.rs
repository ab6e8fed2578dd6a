//! Big-endian readers and writers for TPM 2.0 marshalled structures (TPM 2.0 Part 2).
//!
//! Every read is bounds-checked and every size read from the input is checked against the
//! structure's maximum before anything is allocated.

use crate::EvidenceError;

/// A cursor over untrusted bytes. Reads never panic: running out of input is an error naming
/// the structure being read.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn bytes(
        &mut self,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], EvidenceError> {
        if len > self.rest.len() {
            return Err(EvidenceError::Truncated {
                what,
                needed: len,
                remaining: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], EvidenceError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, EvidenceError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, EvidenceError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, EvidenceError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, EvidenceError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A TPM2B: a u16 size, at most `max`, then that many bytes.
    pub(crate) fn tpm2b(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<&'a [u8], EvidenceError> {
        let size = usize::from(self.u16(what)?);
        if size > max {
            return Err(EvidenceError::SizeTooLarge {
                what,
                max,
                got: size,
            });
        }
        self.bytes(size, what)
    }

    /// Fails unless every byte has been consumed.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), EvidenceError> {
        match self.rest.len() {
            0 => Ok(()),
            count => Err(EvidenceError::TrailingBytes { what, count }),
        }
    }
}

/// Appends `bytes` as a TPM2B (u16 size prefix). Callers only pass buffers they built
/// themselves, whose sizes are bounded well below 64 KiB.
pub(crate) fn put_tpm2b(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), EvidenceError> {
    let size = u16::try_from(bytes.len()).map_err(|_| EvidenceError::SizeTooLarge {
        what: "TPM2B being written",
        max: usize::from(u16::MAX),
        got: bytes.len(),
    })?;
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}
