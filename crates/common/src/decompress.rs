//! Size-capped decompression of request bodies. Every codec is read through a `take(max + 1)`
//! bounded reader, so a decompression bomb costs at most `max_request_size_bytes` of memory before
//! it is rejected.

use std::borrow::Cow;
use std::io::Read;

/// Why a body could not be decompressed; [`DecompressError::status`] is the HTTP status to answer.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    /// The body inflates past the limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The body is not valid for its codec (400).
    #[error("{0}")]
    BadData(String),
    /// The `Content-Encoding` is not supported (415).
    #[error("{0}")]
    Unsupported(String),
}

impl DecompressError {
    /// HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            DecompressError::TooLarge(_) => 413,
            DecompressError::BadData(_) => 400,
            DecompressError::Unsupported(_) => 415,
        }
    }
}

type Error = DecompressError;

/// Largest zstd window we accept (32 MiB); bigger windows would let a tiny frame reserve a lot of
/// memory before a single byte is produced.
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// The error returned when a body inflates past `max`.
pub fn too_large(max: usize) -> Error {
    Error::TooLarge(format!(
        "the request has been rejected because its decompressed size is larger than the allowed \
         limit of {max} bytes (max_request_size_bytes); send smaller batches or raise the limit"
    ))
}

/// Decompresses `body` according to an HTTP `Content-Encoding` (`gzip`, `x-gzip`, `deflate`,
/// `zstd`, `identity` or none), refusing output larger than `max` bytes. Unknown encodings are
/// [`Error::UnsupportedMediaType`].
pub fn decompress_http<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    max: usize,
) -> Result<Cow<'a, [u8]>, Error> {
    let enc = content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match enc.as_str() {
        "" | "identity" => {
            if body.len() > max {
                return Err(too_large(max));
            }
            Ok(Cow::Borrowed(body))
        }
        "gzip" | "x-gzip" => read_capped(flate2::read::MultiGzDecoder::new(body), max, "gzip"),
        "deflate" => {
            // HTTP "deflate" is zlib (RFC 1950), but many clients send raw deflate (RFC 1951).
            if looks_like_zlib(body) {
                read_capped(flate2::read::ZlibDecoder::new(body), max, "deflate")
            } else {
                read_capped(flate2::read::DeflateDecoder::new(body), max, "deflate")
            }
        }
        "zstd" => {
            let mut d = zstd::stream::read::Decoder::with_buffer(body)
                .map_err(|e| Error::BadData(format!("zstd: {e}")))?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| Error::BadData(format!("zstd: {e}")))?;
            read_capped(d, max, "zstd")
        }
        other => Err(Error::Unsupported(format!(
            "unsupported content encoding {other:?}; use gzip, zstd, deflate or none"
        ))),
    }
}

fn looks_like_zlib(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] & 0x0f == 8 && (u16::from(b[0]) << 8 | u16::from(b[1])) % 31 == 0
}

/// Reads at most `max` bytes from `r`; more is [`too_large`], a codec error is `BadData`.
pub fn read_capped<R: Read>(r: R, max: usize, codec: &str) -> Result<Cow<'static, [u8]>, Error> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    r.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| Error::BadData(format!("{codec}: failed to decompress request body: {e}")))?;
    if out.len() > max {
        return Err(too_large(max));
    }
    Ok(Cow::Owned(out))
}

/// Decompresses a Snappy *block* (not framed) body, checking the announced decoded length against
/// `max` before allocating.
pub fn snappy_block(body: &[u8], max: usize) -> Result<Vec<u8>, Error> {
    let n = snap::raw::decompress_len(body)
        .map_err(|e| Error::BadData(format!("snappy: failed to decode request body: {e}")))?;
    if n > max {
        return Err(too_large(max));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::BadData(format!("snappy: failed to decode request body: {e}")))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn gzip_bomb_is_cut_at_the_limit() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 1 << 20]).unwrap();
        let gz = e.finish().unwrap();
        assert!(gz.len() < 10_000);
        let err = decompress_http(&gz, Some("gzip"), 1000).unwrap_err();
        assert_eq!(err.status(), 413);
        assert!(err.to_string().contains("1000 bytes"));
        assert_eq!(
            decompress_http(&gz, Some("GZIP"), 1 << 20).unwrap().len(),
            1 << 20
        );
    }

    #[test]
    fn codecs_round_trip() {
        let data = b"hello hello hello".to_vec();
        let z = zstd::encode_all(data.as_slice(), 3).unwrap();
        assert_eq!(
            &*decompress_http(&z, Some("zstd"), 100).unwrap(),
            data.as_slice()
        );
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&data).unwrap();
        let zl = e.finish().unwrap();
        assert_eq!(
            &*decompress_http(&zl, Some("deflate"), 100).unwrap(),
            data.as_slice()
        );
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&data).unwrap();
        let raw = e.finish().unwrap();
        assert_eq!(
            &*decompress_http(&raw, Some("deflate"), 100).unwrap(),
            data.as_slice()
        );
        assert_eq!(
            &*decompress_http(&data, None, 100).unwrap(),
            data.as_slice()
        );
        assert_eq!(decompress_http(&data, None, 3).unwrap_err().status(), 413);
        assert_eq!(
            decompress_http(&data, Some("br"), 100)
                .unwrap_err()
                .status(),
            415
        );
        assert_eq!(
            decompress_http(b"junk", Some("gzip"), 100)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn snappy_length_checked_before_allocating() {
        let c = snap::raw::Encoder::new()
            .compress_vec(&[7u8; 5000])
            .unwrap();
        assert_eq!(snappy_block(&c, 4999).unwrap_err().status(), 413);
        assert_eq!(snappy_block(&c, 5000).unwrap().len(), 5000);
        // A header announcing ~4 GiB with no data must not allocate.
        assert_eq!(
            snappy_block(&[0xff, 0xff, 0xff, 0xff, 0x0f], 1 << 20)
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(snappy_block(&[0xff], 100).unwrap_err().status(), 400);
    }
}
