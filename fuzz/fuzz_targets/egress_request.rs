//! The egress proxy's request-head parser, response-head parser and chunked-body scanner on
//! arbitrary bytes: no panics, and what the proxy sends upstream is itself a clean HTTP head.
#![no_main]

use brainbox_sidecar::egress::http::{
    parse_request, parse_response, ChunkedScanner, RequestKind,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut host = String::new();
    let mut out = Vec::new();
    if let Ok(Some(info)) = parse_request(data, 16 * 1024, &mut host, &mut out) {
        assert!(info.head_len <= data.len());
        assert!(!host.is_empty());
        if info.kind == RequestKind::Forward {
            assert!(info.path.0 <= info.path_no_query_end && info.path_no_query_end <= info.path.1);
            assert!(info.path.1 <= out.len());
            assert_eq!(out[info.path.0], b'/');
            // The rewritten head parses completely, as exactly itself.
            let mut headers = [httparse::EMPTY_HEADER; 80];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&out) {
                Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len()),
                other => panic!("rewritten head does not parse: {other:?}"),
            }
        }
        // Whatever follows the head as a chunked body: one pass and a split pass agree.
        let rest = &data[info.head_len..];
        let whole = ChunkedScanner::default().feed(rest);
        let mid = rest.len() / 2;
        let mut s = ChunkedScanner::default();
        let split = match s.feed(&rest[..mid]) {
            Ok(None) => s.feed(&rest[mid..]).map(|o| o.map(|n| n + mid)),
            other => other,
        };
        if let (Ok(a), Ok(b)) = (whole, split) {
            assert_eq!(a, b);
        }
    }
    let _ = parse_response(data, 64 * 1024, data.first().is_some_and(|b| b & 1 == 1));
});
