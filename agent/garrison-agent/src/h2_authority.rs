//! Lets gRPC clients that name a Unix socket in `:authority` reach the Workload API.
//!
//! gRPC C-core (so the Python, Ruby and C++ clients, among them the PyPI `spiffe` package)
//! sends the percent-encoded socket path as the HTTP/2 `:authority` of calls over a Unix
//! socket (`run%2Fgarrison-agent%2Fworkload.sock`). That is not a valid URI authority, and
//! the HTTP/2 server under tonic resets every such stream with `PROTOCOL_ERROR`. Nothing in
//! the Workload API uses the authority, so the agent rewrites it before the server sees it.
//!
//! [`Rewriter`] is a sans-IO filter over the client-to-server byte stream: it passes the
//! connection preface and every frame through unchanged, except header blocks (`HEADERS`
//! and its `CONTINUATION`s), which it decodes with HPACK and re-encodes as literals that
//! never touch the server's dynamic table, with an invalid `:authority` replaced by
//! `localhost`. Padding is dropped; priority and the end-of-stream flag are kept. Anything
//! malformed, oversized or out of order ends the connection (the server would have refused
//! it too). The server-to-client direction is not touched.

use std::borrow::Cow;

/// The HTTP/2 client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// What replaces an `:authority` that is not a valid URI authority.
pub const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";
/// Largest frame payload accepted (the server advertises the protocol default, 16 KiB).
pub const MAX_FRAME_PAYLOAD: usize = 16 * 1024;
/// Largest header block accepted, over all its frames.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Largest decoded header list of one block, in RFC 7541 field sizes (name + value + 32
/// octets each): indexed fields can expand a small block.
pub const MAX_DECODED_HEADERS: usize = 64 * 1024;
/// The HPACK dynamic table size the server allows (the protocol default, which the server
/// under tonic advertises).
const HPACK_TABLE_SIZE: usize = 4096;

const FRAME_HEADER: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Why a connection was ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The connection did not start with the HTTP/2 preface.
    #[error("not an HTTP/2 connection preface")]
    Preface,
    /// A frame larger than the server allows.
    #[error("frame of {0} bytes exceeds the 16 KiB limit")]
    FrameTooLarge(usize),
    /// A header block larger than [`MAX_HEADER_BLOCK`] (or decoding to more than
    /// [`MAX_DECODED_HEADERS`]).
    #[error("header block too large")]
    HeaderBlockTooLarge,
    /// Padding or priority fields longer than the frame.
    #[error("malformed HEADERS frame")]
    MalformedHeaders,
    /// A frame other than `CONTINUATION` inside a header block, or a stray `CONTINUATION`.
    #[error("frame out of order inside a header block")]
    OutOfOrder,
    /// The header block is not valid HPACK.
    #[error("header block does not decode: {0}")]
    Hpack(String),
}

/// A header block being collected: its stream, flags and priority bytes, and fragments.
#[derive(Debug)]
struct PendingBlock {
    stream_id: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// The client-to-server filter. Feed it what the client sent, in order; it appends what the
/// server should read.
pub struct Rewriter {
    decoder: loona_hpack::Decoder<'static>,
    preface_seen: usize,
    input: Vec<u8>,
    pending: Option<PendingBlock>,
}

impl std::fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewriter")
            .field("buffered", &self.input.len())
            .finish_non_exhaustive()
    }
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    /// A filter at the start of a connection.
    pub fn new() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HPACK_TABLE_SIZE);
        Self {
            decoder,
            preface_seen: 0,
            input: Vec::new(),
            pending: None,
        }
    }

    /// Takes the next bytes from the client and appends to `out` every complete frame,
    /// rewritten where needed. Incomplete frames wait for more bytes. After an error the
    /// connection must be closed.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if self.preface_seen < PREFACE.len() {
            let expected = PREFACE.get(self.preface_seen..).unwrap_or_default();
            let take = expected.len().min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            if expected.get(..take) != Some(head) {
                return Err(RewriteError::Preface);
            }
            out.extend_from_slice(head);
            self.preface_seen += take;
            bytes = rest;
        }
        self.input.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(header) = self
            .input
            .get(start..start + FRAME_HEADER)
            .and_then(|bytes| <[u8; FRAME_HEADER]>::try_from(bytes).ok())
        {
            let length =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            if length > MAX_FRAME_PAYLOAD {
                return Err(RewriteError::FrameTooLarge(length));
            }
            let end = start + FRAME_HEADER + length;
            if self.input.len() < end {
                break;
            }
            let payload = self
                .input
                .get(start + FRAME_HEADER..end)
                .unwrap_or_default()
                .to_vec();
            self.frame(header, &payload, out)?;
            start = end;
        }
        self.input.drain(..start);
        Ok(())
    }

    /// One complete frame (header and payload).
    fn frame(
        &mut self,
        header: [u8; FRAME_HEADER],
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let (kind, flags) = (header[3], header[4]);
        let stream_id = [header[5], header[6], header[7], header[8]];
        match (kind, self.pending.as_mut()) {
            (TYPE_HEADERS, None) => {
                let pending = headers_frame(stream_id, flags, payload)?;
                self.pending = Some(pending);
            }
            (TYPE_CONTINUATION, Some(pending)) if pending.stream_id == stream_id => {
                if pending.block.len() + payload.len() > MAX_HEADER_BLOCK {
                    return Err(RewriteError::HeaderBlockTooLarge);
                }
                pending.block.extend_from_slice(payload);
            }
            (TYPE_CONTINUATION, _) | (_, Some(_)) => return Err(RewriteError::OutOfOrder),
            (_, None) => {
                out.extend_from_slice(&header);
                out.extend_from_slice(payload);
                return Ok(());
            }
        }
        if flags & FLAG_END_HEADERS != 0
            && let Some(pending) = self.pending.take()
        {
            self.emit(&pending, out)?;
        }
        Ok(())
    }

    /// Decodes a complete header block and writes it out as literal fields.
    fn emit(&mut self, pending: &PendingBlock, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut decoded = 0usize;
        let mut too_large = false;
        self.decoder
            .decode_with_cb(&pending.block, |name: Cow<[u8]>, value: Cow<[u8]>| {
                // Counted as RFC 7541 sizes a header field (name, value and 32 octets), so
                // empty fields referenced many times count too.
                decoded = decoded.saturating_add(name.len() + value.len() + 32);
                if decoded > MAX_DECODED_HEADERS {
                    too_large = true;
                } else {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|error| RewriteError::Hpack(error.to_string()))?;
        if too_large {
            return Err(RewriteError::HeaderBlockTooLarge);
        }
        let mut block = Vec::with_capacity(decoded + 4 * fields.len());
        for (name, value) in &fields {
            let value = if name.as_slice() == b":authority" && !valid_authority(value) {
                REPLACEMENT_AUTHORITY
            } else {
                value.as_slice()
            };
            // Literal header field without indexing, new name (RFC 7541 section 6.2.2).
            block.push(0);
            encode_string(name, &mut block);
            encode_string(value, &mut block);
        }
        write_header_block(pending, &block, out);
        Ok(())
    }
}

/// Parses a HEADERS frame's payload into a pending block.
fn headers_frame(
    stream_id: [u8; 4],
    flags: u8,
    payload: &[u8],
) -> Result<PendingBlock, RewriteError> {
    let mut rest = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&length, after) = rest.split_first().ok_or(RewriteError::MalformedHeaders)?;
        pad = usize::from(length);
        rest = after;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let (fields, after) = rest
            .split_first_chunk::<5>()
            .ok_or(RewriteError::MalformedHeaders)?;
        priority = Some(*fields);
        rest = after;
    }
    let fragment_len = rest
        .len()
        .checked_sub(pad)
        .ok_or(RewriteError::MalformedHeaders)?;
    Ok(PendingBlock {
        stream_id,
        end_stream: flags & FLAG_END_STREAM != 0,
        priority,
        block: rest.get(..fragment_len).unwrap_or_default().to_vec(),
    })
}

/// Writes the block as one HEADERS frame and as many CONTINUATION frames as the frame size
/// limit needs.
fn write_header_block(pending: &PendingBlock, block: &[u8], out: &mut Vec<u8>) {
    let first_room = MAX_FRAME_PAYLOAD - pending.priority.map_or(0, |p| p.len());
    let (first, mut rest) = block.split_at(block.len().min(first_room));
    let mut flags = 0u8;
    if pending.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if pending.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    let priority: &[u8] = match &pending.priority {
        Some(fields) => fields,
        None => &[],
    };
    frame_header(
        priority.len() + first.len(),
        TYPE_HEADERS,
        flags,
        pending.stream_id,
        out,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        let flags = if after.is_empty() {
            FLAG_END_HEADERS
        } else {
            0
        };
        frame_header(
            chunk.len(),
            TYPE_CONTINUATION,
            flags,
            pending.stream_id,
            out,
        );
        out.extend_from_slice(chunk);
        rest = after;
    }
}

fn frame_header(length: usize, kind: u8, flags: u8, stream_id: [u8; 4], out: &mut Vec<u8>) {
    // length <= MAX_FRAME_PAYLOAD < 2^24: the three low bytes are the whole length.
    let [_, high, middle, low] = u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&[high, middle, low]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_id);
}

/// An HPACK string literal without Huffman coding (RFC 7541 section 5.2).
fn encode_string(bytes: &[u8], out: &mut Vec<u8>) {
    encode_integer(bytes.len(), 7, 0, out);
    out.extend_from_slice(bytes);
}

/// An HPACK integer with an `prefix_bits`-bit prefix (RFC 7541 section 5.1).
fn encode_integer(mut value: usize, prefix_bits: u32, first_byte_flags: u8, out: &mut Vec<u8>) {
    let low_byte = |value: usize| value.to_le_bytes().first().copied().unwrap_or_default();
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.push(first_byte_flags | low_byte(value));
        return;
    }
    out.push(first_byte_flags | low_byte(max_prefix));
    value -= max_prefix;
    while value >= 128 {
        out.push(low_byte(value % 128) | 0x80);
        value /= 128;
    }
    out.push(low_byte(value));
}

/// What the server accepts as an authority.
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame_header(payload.len(), kind, flags, stream.to_be_bytes(), &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn encode(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        encoder.encode(fields.iter().map(|(n, v)| (*n, *v)))
    }

    fn decode_out(out: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut fields = Vec::new();
        let mut rest = out;
        let mut block = Vec::new();
        while rest.len() >= FRAME_HEADER {
            let length =
                usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let (kind, flags) = (rest[3], rest[4]);
            let payload = &rest[FRAME_HEADER..FRAME_HEADER + length];
            if kind == TYPE_HEADERS || kind == TYPE_CONTINUATION {
                let skip = if kind == TYPE_HEADERS && flags & FLAG_PRIORITY != 0 {
                    5
                } else {
                    0
                };
                block.extend_from_slice(&payload[skip..]);
                if flags & FLAG_END_HEADERS != 0 {
                    fields.extend(decoder.decode(&block).unwrap());
                    block.clear();
                }
            }
            rest = &rest[FRAME_HEADER + length..];
        }
        fields
    }

    const PATH_AUTHORITY: &[u8] = b"run%2Fgarrison-agent%2Fworkload.sock";

    #[test]
    fn an_invalid_authority_becomes_localhost_and_the_rest_is_kept() {
        let block = encode(&[
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
            (b":authority", PATH_AUTHORITY),
            (b"workload.spiffe.io", b"true"),
        ]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS, passed through
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block));
        input.extend(frame(0x0, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0])); // DATA
        let mut out = Vec::new();
        // Byte by byte: frames split anywhere are reassembled.
        let mut rewriter = Rewriter::new();
        for byte in &input {
            rewriter.push(std::slice::from_ref(byte), &mut out).unwrap();
        }
        assert!(out.starts_with(PREFACE));
        let fields = decode_out(&out[PREFACE.len()..]);
        let authority = fields.iter().find(|(n, _)| n == b":authority").unwrap();
        assert_eq!(authority.1, REPLACEMENT_AUTHORITY);
        assert!(
            fields
                .iter()
                .any(|(n, v)| n == b"workload.spiffe.io" && v == b"true")
        );
        assert_eq!(fields.len(), 5);
        assert!(out.ends_with(&frame(0x0, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0])));
    }

    #[test]
    fn a_valid_authority_is_kept_and_the_dynamic_table_is_followed_across_blocks() {
        let mut encoder = loona_hpack::Encoder::new();
        let fields: [(&[u8], &[u8]); 2] = [(b":authority", b"localhost:8080"), (b"x-a", b"1")];
        let first = encoder.encode(fields.iter().map(|(n, v)| (*n, *v)));
        let second = encoder.encode(fields.iter().map(|(n, v)| (*n, *v)));
        let mut input = PREFACE.to_vec();
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &first));
        // The second block is split into HEADERS + CONTINUATION, padded and with priority.
        let mut payload = vec![2u8]; // pad length
        payload.extend([0, 0, 0, 0, 16]); // priority
        payload.extend(&second[..1]);
        payload.extend([0, 0]);
        input.extend(frame(
            TYPE_HEADERS,
            FLAG_PADDED | FLAG_PRIORITY,
            3,
            &payload,
        ));
        input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &second[1..]));
        let mut out = Vec::new();
        Rewriter::new().push(&input, &mut out).unwrap();
        let decoded = decode_out(&out[PREFACE.len()..]);
        assert_eq!(decoded.len(), 4);
        assert!(
            decoded
                .iter()
                .all(|(n, v)| n != b":authority" || v == b"localhost:8080")
        );
    }

    #[test]
    fn bad_input_ends_the_connection() {
        let cases: Vec<(Vec<u8>, RewriteError)> = vec![
            (b"GET / HTTP/1.1\r\n".to_vec(), RewriteError::Preface),
            (
                [PREFACE, &[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1][..]].concat(),
                RewriteError::FrameTooLarge(0xff_ffff),
            ),
            (
                [
                    PREFACE,
                    &frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, b"x")[..],
                ]
                .concat(),
                RewriteError::OutOfOrder,
            ),
            (
                [
                    PREFACE,
                    &frame(TYPE_HEADERS, 0, 1, &encode(&[(b"a", b"b")]))[..],
                    &frame(0x0, 0, 1, b"data")[..],
                ]
                .concat(),
                RewriteError::OutOfOrder,
            ),
            (
                [
                    PREFACE,
                    &frame(TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &[9, 1])[..],
                ]
                .concat(),
                RewriteError::MalformedHeaders,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Rewriter::new().push(&input, &mut Vec::new()), Err(expected));
        }
        // An index far outside the tables is an HPACK error, not a panic.
        let input = [
            PREFACE,
            &frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0xff, 0xff, 0x7f])[..],
        ]
        .concat();
        assert!(matches!(
            Rewriter::new().push(&input, &mut Vec::new()),
            Err(RewriteError::Hpack(_))
        ));
    }

    #[test]
    fn an_amplifying_block_is_refused() {
        // One big literal added to the dynamic table, then referenced by index many times.
        let value = vec![b'v'; 4000];
        let mut block = Vec::new();
        block.push(0x40); // literal with incremental indexing, new name
        encode_string(b"x-big", &mut block);
        encode_string(&value, &mut block);
        block.extend(std::iter::repeat_n(0xbe, 100)); // index 62: the entry just added
        let mut input = PREFACE.to_vec();
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block));
        assert_eq!(
            Rewriter::new().push(&input, &mut Vec::new()),
            Err(RewriteError::HeaderBlockTooLarge)
        );
    }

    #[test]
    fn integers_use_continuation_bytes_past_the_prefix() {
        let mut out = Vec::new();
        encode_integer(1337, 5, 0, &mut out);
        assert_eq!(out, [31, 154, 10]); // RFC 7541 C.1.2
        out.clear();
        encode_integer(10, 5, 0, &mut out);
        assert_eq!(out, [10]);
    }
}

#[cfg(test)]
mod amplification {
    use super::*;

    #[test]
    fn empty_fields_referenced_many_times_count_against_the_limit() {
        // An empty name and value added to the dynamic table, then referenced 3,000 times:
        // 3,000 x 32 octets is past the 64 KiB limit though no byte of it is a name or value.
        let mut block = vec![0x40, 0x00, 0x00];
        block.extend(std::iter::repeat_n(0xbe, 3_000));
        let mut input = PREFACE.to_vec();
        let mut header = Vec::new();
        frame_header(
            block.len(),
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1u32.to_be_bytes(),
            &mut header,
        );
        input.extend(header);
        input.extend(block);
        assert_eq!(
            Rewriter::new().push(&input, &mut Vec::new()),
            Err(RewriteError::HeaderBlockTooLarge)
        );
    }
}
