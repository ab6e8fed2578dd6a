//! Air-gap sync files: the messages a Sync connection would carry, one direction, in one
//! gzip stream of length-delimited [`SyncFile`](crate::v1::SyncFile) messages, the header
//! first. Read one message at a time, so a month of records never sits in memory at once.
//!
//! Layout (inside gzip): for each message, its length as 4 bytes big-endian, then its
//! protobuf encoding. A message longer than [`MAX_SYNC_MESSAGE`](crate::limits::MAX_SYNC_MESSAGE)
//! is refused before it is read.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use prost::Message as _;

use crate::limits::MAX_SYNC_MESSAGE;
use crate::v1::{SyncFile, SyncFileHeader, sync_file::Part};

/// `direction` of a file a site writes for its hub.
pub const SITE_TO_HUB: &str = "site-to-hub";
/// `direction` of a file a hub writes for one site.
pub const HUB_TO_SITE: &str = "hub-to-site";

/// Why a sync file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncFileError {
    /// Reading, writing or decompressing failed (a file that is not gzip lands here).
    #[error("sync file I/O")]
    Io(#[from] std::io::Error),
    /// A message is larger than any writer produces.
    #[error("a sync file message of {length} bytes exceeds the {max}-byte limit")]
    TooLarge { length: usize, max: usize },
    /// A message does not decode.
    #[error("a sync file message does not decode")]
    Decode(#[from] prost::DecodeError),
    /// The file does not start with a header, or has a second one.
    #[error("sync file: {problem}")]
    Layout { problem: &'static str },
}

/// Writes a sync file: the header, then parts, then [`SyncFileWriter::finish`].
pub struct SyncFileWriter<W: Write> {
    out: GzEncoder<W>,
}

impl<W: Write> SyncFileWriter<W> {
    /// Starts a file with its header.
    pub fn new(out: W, header: SyncFileHeader) -> Result<Self, SyncFileError> {
        let mut writer = SyncFileWriter {
            out: GzEncoder::new(out, Compression::default()),
        };
        writer.write_message(&SyncFile {
            part: Some(Part::Header(header)),
        })?;
        Ok(writer)
    }

    /// Appends one part.
    pub fn push(&mut self, part: Part) -> Result<(), SyncFileError> {
        if matches!(part, Part::Header(_)) {
            return Err(SyncFileError::Layout {
                problem: "a second header",
            });
        }
        self.write_message(&SyncFile { part: Some(part) })
    }

    fn write_message(&mut self, message: &SyncFile) -> Result<(), SyncFileError> {
        let bytes = message.encode_to_vec();
        let length = u32::try_from(bytes.len())
            .ok()
            .filter(|l| usize::try_from(*l).is_ok_and(|l| l <= MAX_SYNC_MESSAGE))
            .ok_or(SyncFileError::TooLarge {
                length: bytes.len(),
                max: MAX_SYNC_MESSAGE,
            })?;
        self.out.write_all(&length.to_be_bytes())?;
        self.out.write_all(&bytes)?;
        Ok(())
    }

    /// Ends the gzip stream and returns the underlying writer.
    pub fn finish(self) -> Result<W, SyncFileError> {
        Ok(self.out.finish()?)
    }
}

/// Reads a sync file: [`SyncFileReader::header`] first, then parts until `None`.
pub struct SyncFileReader<R: Read> {
    input: GzDecoder<R>,
    header: SyncFileHeader,
}

impl<R: Read> SyncFileReader<R> {
    /// Opens a file and reads its header.
    pub fn new(input: R) -> Result<Self, SyncFileError> {
        let mut input = GzDecoder::new(input);
        let first = read_message(&mut input)?.ok_or(SyncFileError::Layout {
            problem: "the file is empty",
        })?;
        let Some(Part::Header(header)) = first.part else {
            return Err(SyncFileError::Layout {
                problem: "the file does not start with its header",
            });
        };
        Ok(SyncFileReader { input, header })
    }

    /// The file's header.
    pub fn header(&self) -> &SyncFileHeader {
        &self.header
    }

    /// The next part, `None` at the end of the file.
    pub fn next_part(&mut self) -> Result<Option<Part>, SyncFileError> {
        match read_message(&mut self.input)? {
            None => Ok(None),
            Some(SyncFile {
                part: Some(Part::Header(_)),
            }) => Err(SyncFileError::Layout {
                problem: "a second header",
            }),
            Some(SyncFile { part: None }) => Err(SyncFileError::Layout {
                problem: "an empty part",
            }),
            Some(SyncFile { part }) => Ok(part),
        }
    }
}

/// One length-delimited message, `None` at a clean end of the stream.
fn read_message(input: &mut impl Read) -> Result<Option<SyncFile>, SyncFileError> {
    let mut length = [0u8; 4];
    let mut filled = 0;
    while filled < length.len() {
        let Some(rest) = length.get_mut(filled..) else {
            break;
        };
        match input.read(rest)? {
            0 if filled == 0 => return Ok(None),
            0 => {
                return Err(SyncFileError::Layout {
                    problem: "the file ends inside a message length",
                });
            }
            n => filled += n,
        }
    }
    let length = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
    if length > MAX_SYNC_MESSAGE {
        return Err(SyncFileError::TooLarge {
            length,
            max: MAX_SYNC_MESSAGE,
        });
    }
    let mut bytes = vec![0u8; length];
    input.read_exact(&mut bytes)?;
    Ok(Some(SyncFile::decode(bytes.as_slice())?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::v1::LogBatch;

    fn header() -> SyncFileHeader {
        SyncFileHeader {
            direction: SITE_TO_HUB.to_owned(),
            origin: "garrison.example.org/site/s1".to_owned(),
            written_unix: 1,
        }
    }

    #[test]
    fn parts_come_back_in_order() {
        let mut writer = SyncFileWriter::new(Vec::new(), header()).unwrap();
        for first in 0..3 {
            writer
                .push(Part::LogBatch(LogBatch {
                    first,
                    ..Default::default()
                }))
                .unwrap();
        }
        let bytes = writer.finish().unwrap();
        let mut reader = SyncFileReader::new(bytes.as_slice()).unwrap();
        assert_eq!(reader.header(), &header());
        for first in 0..3 {
            match reader.next_part().unwrap() {
                Some(Part::LogBatch(batch)) => assert_eq!(batch.first, first),
                other => panic!("{other:?}"),
            }
        }
        assert!(reader.next_part().unwrap().is_none());
    }

    #[test]
    fn damaged_files_are_refused_without_panicking() {
        assert!(SyncFileReader::new(&b"not gzip"[..]).is_err());
        let bytes = SyncFileWriter::new(Vec::new(), header())
            .unwrap()
            .finish()
            .unwrap();
        for cut in 0..bytes.len() {
            let _ = SyncFileReader::new(&bytes[..cut]).map(|mut r| r.next_part());
        }
        // A length prefix beyond the limit is refused before anything is allocated.
        let mut huge = GzEncoder::new(Vec::new(), Compression::default());
        huge.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let huge = huge.finish().unwrap();
        assert!(matches!(
            SyncFileReader::new(huge.as_slice()),
            Err(SyncFileError::TooLarge { .. })
        ));
    }
}
