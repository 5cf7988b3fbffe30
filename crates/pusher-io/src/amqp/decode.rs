//! Delivery bodies: content type, content encoding (gzip, bounded against bombs) and the
//! JSON object every Kazoo message is.

use std::borrow::Cow;
use std::io::Read;

use serde_json::Value;

/// Largest body accepted, compressed or not (Kamailio messages are a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a delivery's body could not be turned into a JSON object.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Content type other than `application/json` (Kazoo also allows
    /// `application/erlang`, which no Kamailio sends).
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    /// Content encoding other than none/identity/gzip.
    #[error("unsupported content encoding {0:?}")]
    ContentEncoding(String),
    /// Body larger than [`MAX_BODY_BYTES`] (before or after gunzip).
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// gzip stream invalid.
    #[error("invalid gzip body: {0}")]
    Gzip(String),
    /// Not JSON, or JSON but not an object.
    #[error("invalid JSON body: {0}")]
    Json(String),
}

/// Decodes a delivery body per its AMQP properties: `application/json` (or no content
/// type), optionally `content_encoding: gzip`, at most [`MAX_BODY_BYTES`], a JSON object.
pub fn decode_body(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    data: &[u8],
) -> Result<Value, DecodeError> {
    json_object(&body_bytes(content_type, content_encoding, data)?)
}

/// The JSON bytes of a delivery body: the checks of [`decode_body`] but the JSON one,
/// gzip inflated (borrowed when there was nothing to inflate).
pub fn body_bytes<'a>(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    data: &'a [u8],
) -> Result<Cow<'a, [u8]>, DecodeError> {
    // An empty content type is the same as none (some publishers set "").
    if let Some(ct) = content_type.filter(|ct| !ct.trim().is_empty()) {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(DecodeError::ContentType(ct.to_string()));
        }
    }
    if data.len() > MAX_BODY_BYTES {
        return Err(DecodeError::TooLarge);
    }
    match content_encoding.map(str::trim) {
        None | Some("") => Ok(Cow::Borrowed(data)),
        Some(e) if e.eq_ignore_ascii_case("identity") => Ok(Cow::Borrowed(data)),
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(data)
                .take(MAX_BODY_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| DecodeError::Gzip(e.to_string()))?;
            if out.len() > MAX_BODY_BYTES {
                return Err(DecodeError::TooLarge);
            }
            Ok(Cow::Owned(out))
        }
        Some(other) => Err(DecodeError::ContentEncoding(other.to_string())),
    }
}

/// The bytes as a JSON object (the last check of [`decode_body`]).
pub fn json_object(bytes: &[u8]) -> Result<Value, DecodeError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(DecodeError::Json("not a JSON object".into())),
        Err(e) => Err(DecodeError::Json(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    #[test]
    fn decodes_plain_and_gzip_json() {
        let body = br#"{"Event-Name":"reg_success"}"#;
        let v = decode_body(Some("application/json"), None, body).expect("plain");
        assert_eq!(v["Event-Name"], "reg_success");
        let v = decode_body(Some("application/json"), Some("gzip"), &gzip(body)).expect("gzip");
        assert_eq!(v["Event-Name"], "reg_success");
        assert!(decode_body(None, None, body).is_ok());
        assert!(decode_body(Some("application/json; charset=utf-8"), None, body).is_ok());
        assert!(
            decode_body(Some(""), None, body).is_ok(),
            "empty = no content type"
        );
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert_eq!(
            decode_body(Some("application/erlang"), None, b"x"),
            Err(DecodeError::ContentType("application/erlang".into()))
        );
        assert!(matches!(
            decode_body(None, Some("br"), b"{}"),
            Err(DecodeError::ContentEncoding(_))
        ));
        assert!(matches!(
            decode_body(None, Some("gzip"), b"not gzip"),
            Err(DecodeError::Gzip(_))
        ));
        assert!(matches!(
            decode_body(None, None, b"[1,2]"),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            decode_body(None, None, &[0xff, 0xfe, b'{']),
            Err(DecodeError::Json(_))
        ));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(decode_body(None, None, &big), Err(DecodeError::TooLarge));
    }

    #[test]
    fn gzip_bomb_is_bounded() {
        let zeros = vec![b' '; MAX_BODY_BYTES * 4];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < MAX_BODY_BYTES);
        assert_eq!(
            decode_body(None, Some("gzip"), &bomb),
            Err(DecodeError::TooLarge)
        );
    }
}
