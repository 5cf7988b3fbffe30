//! Just enough DER to read a certificate's subject CN, so the APNs mock can record which
//! identity a verified client used without pulling in an X.509 parser.

/// Subject common name of a DER certificate (`None` if it has none or the DER is odd).
///
/// A small DER walk (Certificate → tbsCertificate → subject → CN): enough for the mock to
/// record which identity a verified client used, without pulling in an X.509 parser.
pub fn subject_cn(cert_der: &[u8]) -> Option<String> {
    let (_, cert, _) = pusher_core::der::tlv(cert_der)?;
    let (_, mut tbs, _) = pusher_core::der::tlv(cert)?;
    // Optional explicit [0] version.
    if tbs.first() == Some(&0xA0) {
        tbs = pusher_core::der::tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity: skip.
    for _ in 0..4 {
        tbs = pusher_core::der::tlv(tbs)?.2;
    }
    let (tag, mut subject, _) = pusher_core::der::tlv(tbs)?;
    if tag != 0x30 {
        return None;
    }
    const CN_OID: [u8; 3] = [0x55, 0x04, 0x03];
    while !subject.is_empty() {
        let (_, rdn, rest) = pusher_core::der::tlv(subject)?;
        subject = rest;
        let mut atvs = rdn;
        while !atvs.is_empty() {
            let (_, atv, rest) = pusher_core::der::tlv(atvs)?;
            atvs = rest;
            let (oid_tag, oid, value) = pusher_core::der::tlv(atv)?;
            if oid_tag == 0x06 && oid == CN_OID {
                let (_, text, _) = pusher_core::der::tlv(value)?;
                return Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_cn_rejects_garbage() {
        assert_eq!(subject_cn(b""), None);
        assert_eq!(subject_cn(&[0x30, 0x82, 0xFF]), None);
        assert_eq!(subject_cn(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
    }
}
