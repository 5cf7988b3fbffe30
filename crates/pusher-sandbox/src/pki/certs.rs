//! How the PKI's certificates and keys are made: rcgen parameters for the CAs and client
//! certificates, the `openssl pkcs12 -nodes` text layout, and the `openssl` CLI for RSA
//! keys (rcgen on ring cannot generate them).

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, date_time_ymd,
};

use super::{ClientVariant, TEAM_ID};

/// A CA certificate's parameters (valid 2019–2100).
pub(super) fn ca_params(cn: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "pusher-sandbox");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2019, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    Ok(params)
}

/// OID of the LDAP `UID` attribute Apple puts the bundle id in (0.9.2342.19200300.100.1.1).
const UID_OID: [u64; 7] = [0, 9, 2342, 19200300, 100, 1, 1];

/// An Apple-style client certificate's parameters for `variant`.
pub(super) fn client_params(variant: ClientVariant) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CustomDnType(UID_OID.to_vec()),
        DnValue::Utf8String(variant.bundle_id().to_string()),
    );
    dn.push(DnType::CommonName, variant.subject_cn());
    dn.push(DnType::OrganizationalUnitName, TEAM_ID);
    dn.push(DnType::OrganizationName, "My Org");
    dn.push(DnType::CountryName, "US");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if variant == ClientVariant::Expired {
        params.not_before = date_time_ymd(2019, 1, 1);
        params.not_after = date_time_ymd(2020, 1, 1);
    } else {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2100, 1, 1);
    }
    Ok(params)
}

/// What `openssl pkcs12 -in x.p12 -nodes` (OpenSSL 1.1 style) prints for a cert + key.
pub(super) fn bag_attributes_pem(
    variant: ClientVariant,
    cert_pem: &str,
    key_pkcs8: &str,
) -> String {
    let bundle = variant.bundle_id();
    let cn = variant.subject_cn();
    let local_key_id = "5F 3A 9C 21 7B 44 0E D8 96 13 AB 70 C2 5E 8F 01 34 6D 2A 99";
    format!(
        "Bag Attributes\n    friendlyName: {cn}\n    localKeyID: {local_key_id}\n\
         subject=/UID={bundle}/CN={cn}/OU={TEAM_ID}/O=My Org/C=US\n\
         issuer=/CN=Pusher Sandbox Test CA/O=pusher-sandbox\n\
         {cert_pem}\
         Bag Attributes\n    friendlyName: {cn}\n    localKeyID: {local_key_id}\n\
         Key Attributes: <No Attributes>\n\
         {key_pkcs8}"
    )
}

/// Run the openssl CLI with optional stdin; returns stdout.
pub(super) fn openssl(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("Failed to run the openssl CLI (is openssl installed?)")?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("openssl printed non-UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::subject_cn;
    use rcgen::KeyPair;

    #[test]
    fn subject_cn_of_rcgen_certs() {
        let key = KeyPair::generate().unwrap();
        let cert = client_params(ClientVariant::Pkcs1)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(
            subject_cn(cert.der()).as_deref(),
            Some("Apple VoIP Services: org.myorg.pkcs1")
        );
        let ca = ca_params("Some CA").unwrap().self_signed(&key).unwrap();
        assert_eq!(subject_cn(ca.der()).as_deref(), Some("Some CA"));
    }
}
