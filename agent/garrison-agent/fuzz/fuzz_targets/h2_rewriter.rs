//! What a local Workload API caller sends, as arbitrary bytes after the HTTP/2 preface, cut
//! into chunks at arbitrary places: the agent's header-block rewriter must never panic, and
//! whatever it passes on must itself be acceptable to a fresh rewriter (it only ever emits
//! well-formed frames).
#![no_main]

use garrison_agent::h2_authority::{PREFACE, Rewriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, body)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut rewriter = Rewriter::new();
    let mut out = Vec::new();
    if rewriter.push(PREFACE, &mut out).is_err() {
        panic!("the preface was refused");
    }
    let mut ok = true;
    for piece in body.chunks(chunk) {
        if rewriter.push(piece, &mut out).is_err() {
            ok = false;
            break;
        }
    }
    if ok {
        // Re-reading the output cannot fail on framing: every frame it holds is complete
        // and within the size limit (header blocks were re-encoded as plain literals).
        let mut again = Vec::new();
        let _ = Rewriter::new().push(&out, &mut again);
    }
});
