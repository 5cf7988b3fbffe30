//! APNs HTTP/2 client of our own on `reqwest` (rustls + ring).
//!
//! Why not `a2`: it cannot target an admin-set host (Kazoo's `add_apple_app AppId
//! CertFile Host`) or a test CA, and it rejects PKCS#1 keys (spec/providers.md).
//!
//! - Certificate auth: the Kazoo PEM (certificate + unencrypted key, PKCS#1 or PKCS#8,
//!   `Bag Attributes` noise tolerated) becomes the TLS client identity. A file with several
//!   keys is refused: Kazoo used the first, reqwest would use the last.
//! - Token auth: an ES256 JWT from the `.p8` key, one cached token per (team, key),
//!   reused until it is `refresh` old (Apple: no more than every 20 min, no less than
//!   every 60 min). After `403 ExpiredProviderToken` the caller hands the refused token's
//!   [`CredentialTag`] to [`Client::renew`]: the next request signs a new JWT, and a burst
//!   of 403s for the same JWT signs one, not one per push.
//! - Extra roots are *added* to the system roots (`PUSHER_EXTRA_CA_FILE`); server TLS is
//!   always verified; connect and whole-request timeouts on every request
//!   ([`crate::provider`]).
//! - One client = one HTTP/2 connection with keep-alive pings; requests multiplex on it.
//!
//! Building the request (headers, payload) is pure and lives in `pusher_core::apns`; this
//! module only moves bytes and reports what came back.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pusher_core::apns::ApnsRequest;
use pusher_core::secret::Secret;
use reqwest::header::{HeaderName, HeaderValue};

pub use crate::provider::CredentialTag;
use crate::provider::client_builder;

/// Errors of the APNs adapter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate PEM cannot be used as a client identity.
    #[error("APNs certificate unusable: {0}")]
    Certificate(String),
    /// The `.p8` key or team/key ids cannot be used.
    #[error("APNs token key unusable: {0}")]
    TokenKey(String),
    /// The HTTP client could not be built.
    #[error("cannot build the APNs client: {0}")]
    Client(String),
    /// Connection, TLS or timeout error (worth retrying).
    #[error("APNs request failed: {0}")]
    Transport(String),
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What APNs answered (a JSON `{"reason": …}` body on errors, none on success); the
/// credential is the provider token the request carried (token auth), for
/// [`Client::renew`].
pub type Response = crate::provider::Response<Option<CredentialTag>>;

/// Checks that a Kazoo certificate PEM holds exactly one certificate chain start and one
/// unencrypted private key, and returns it trimmed of anything reqwest cannot use.
pub fn check_certificate_pem(pem: &str) -> Result<()> {
    let mut certs = 0;
    let mut keys = 0;
    for line in pem.lines().map(str::trim) {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        match label {
            "CERTIFICATE" => certs += 1,
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => keys += 1,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(Error::Certificate(
                    "the private key is encrypted; export it with `openssl pkcs12 -nodes`".into(),
                ));
            }
            _ => {}
        }
    }
    match (certs, keys) {
        (0, _) => Err(Error::Certificate("no CERTIFICATE block in the PEM".into())),
        (_, 0) => Err(Error::Certificate("no private key in the PEM".into())),
        (_, 1) => Ok(()),
        (_, n) => Err(Error::Certificate(format!(
            "{n} private keys in the PEM; keep only the one that matches the certificate"
        ))),
    }
}

/// How a client authenticates to APNs.
pub enum Auth {
    /// TLS client certificate (Kazoo `apple.certificate`, `auth_type` `certdata`).
    Certificate {
        /// Certificate + key PEM.
        pem: Secret<String>,
    },
    /// Provider token (`auth_type` `token`, `.p8` attachment).
    Token(std::sync::Arc<TokenSigner>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Certificate { .. } => f.write_str("Certificate(<redacted>)"),
            Auth::Token(s) => write!(f, "Token(team {}, key {})", s.team_id, s.key_id),
        }
    }
}

/// Signs and caches the ES256 provider token of one (team, key).
pub struct TokenSigner {
    team_id: String,
    key_id: String,
    key: EncodingKey,
    refresh: Duration,
    cached: Mutex<Cached>,
}

/// The signer's current token and the tag the next one gets.
#[derive(Default)]
struct Cached {
    /// JWT, when it was signed, its tag.
    current: Option<(String, SystemTime, CredentialTag)>,
    signed: u64,
    /// `iat` of the last JWT signed.
    last_iat: u64,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

/// Shortest refresh Apple tolerates (more often → 429 TooManyProviderTokenUpdates).
pub const MIN_TOKEN_REFRESH: Duration = Duration::from_secs(20 * 60);
/// Longest token life Apple accepts (older → 403 ExpiredProviderToken).
pub const MAX_TOKEN_REFRESH: Duration = Duration::from_secs(60 * 60);
/// How far ahead of the clock a renewed token's `iat` may run (see `bearer_at`).
const MAX_IAT_LEAD_SECS: u64 = 5;

impl TokenSigner {
    /// A signer for `team_id`/`key_id` with the `.p8` PEM; `refresh_minutes` is clamped to
    /// Apple's 20–60 minute window.
    pub fn new(team_id: &str, key_id: &str, p8_pem: &[u8], refresh_minutes: u64) -> Result<Self> {
        let valid_id = |s: &str| s.len() == 10 && s.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid_id(team_id) {
            return Err(Error::TokenKey(format!(
                "team_id {team_id:?} is not a 10-character Apple team id"
            )));
        }
        if !valid_id(key_id) {
            return Err(Error::TokenKey(format!(
                "key_id {key_id:?} is not a 10-character Apple key id"
            )));
        }
        let key = EncodingKey::from_ec_pem(p8_pem).map_err(|e| {
            Error::TokenKey(format!("private_key.p8 is not an EC P-256 PEM key: {e}"))
        })?;
        let refresh = Duration::from_secs(refresh_minutes.saturating_mul(60)).clamp(
            MIN_TOKEN_REFRESH,
            MAX_TOKEN_REFRESH - Duration::from_secs(60),
        );
        let signer = Self {
            team_id: team_id.to_string(),
            key_id: key_id.to_string(),
            key,
            refresh,
            cached: Mutex::new(Cached::default()),
        };
        // Sign once now so a bad key fails at configuration time, not at the first call.
        signer.bearer_at(SystemTime::now())?;
        Ok(signer)
    }

    /// Team id.
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// Key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The current token and its tag, regenerated when older than the refresh period or
    /// after [`TokenSigner::renew`].
    pub fn bearer(&self) -> Result<(String, CredentialTag)> {
        self.bearer_at(SystemTime::now())
    }

    /// [`TokenSigner::bearer`] with an injected clock (for tests).
    pub fn bearer_at(&self, now: SystemTime) -> Result<(String, CredentialTag)> {
        // Held while signing: concurrent callers after a renewal wait for one new JWT
        // instead of each signing their own (one ES256 signature is quick).
        let mut cached = self
            .cached
            .lock()
            .map_err(|_| Error::TokenKey("token cache poisoned".into()))?;
        if let Some((jwt, issued, tag)) = cached.current.as_ref()
            && now.duration_since(*issued).unwrap_or_default() < self.refresh
        {
            return Ok((jwt.clone(), *tag));
        }
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        // ES256 here is deterministic (RFC 6979): a JWT signed again within the same
        // second would be the very one APNs just refused. So `iat` only grows, running at
        // most a few seconds ahead when renewals come faster than one a second (which
        // only a clock APNs disagrees with can cause; a new JWT cannot help then).
        let iat = cached
            .last_iat
            .saturating_add(1)
            .clamp(now_secs, now_secs + MAX_IAT_LEAD_SECS);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = serde_json::json!({ "iss": self.team_id, "iat": iat });
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Error::TokenKey(format!("cannot sign the provider token: {e}")))?;
        cached.signed += 1;
        cached.last_iat = iat;
        let tag = CredentialTag(cached.signed);
        cached.current = Some((jwt.clone(), now, tag));
        Ok((jwt, tag))
    }

    /// APNs refused the token tagged `refused` (`403 ExpiredProviderToken`): drop it if it
    /// is still the current one, so the next request signs a new JWT. A refusal of an
    /// older token (another push already renewed it) changes nothing, so a burst of 403s
    /// for one JWT signs one new JWT, not one per push. Returns whether it was dropped.
    pub fn renew(&self, refused: CredentialTag) -> bool {
        let Ok(mut cached) = self.cached.lock() else {
            return false;
        };
        match cached.current {
            Some((_, _, tag)) if tag == refused => {
                cached.current = None;
                true
            }
            _ => false,
        }
    }
}

/// Settings of one APNs client.
#[derive(Debug)]
pub struct ClientConfig {
    /// `https://host:port`.
    pub base_url: String,
    /// Certificate or token.
    pub auth: Auth,
    /// PEM roots added to the system roots.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

/// A client for one (app, credential, host): one multiplexed HTTP/2 connection.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    /// `base_url` parsed once, when it is a plain `scheme://host[:port][/path]`: each
    /// request then only sets its path instead of parsing the whole URL again.
    base: Option<reqwest::Url>,
    signer: Option<std::sync::Arc<TokenSigner>>,
}

impl Client {
    /// Builds the client (no I/O: the connection opens with the first request).
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        let mut b = client_builder(cfg.extra_roots_pem.as_deref(), cfg.request_timeout)
            .map_err(Error::Client)?
            .http2_prior_knowledge()
            .https_only(true)
            // APNs wants long-lived connections; pings detect dead ones early.
            .http2_keep_alive_interval(Duration::from_secs(60))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .http2_keep_alive_while_idle(true)
            .pool_idle_timeout(None);
        let mut signer = None;
        match cfg.auth {
            Auth::Certificate { pem } => {
                check_certificate_pem(pem.expose())?;
                let identity = reqwest::Identity::from_pem(pem.expose().as_bytes())
                    .map_err(|e| Error::Certificate(format!("{e}")))?;
                b = b.identity(identity);
            }
            Auth::Token(s) => signer = Some(s),
        }
        let http = b.build().map_err(|e| Error::Client(e.to_string()))?;
        let base_url = cfg.base_url.trim_end_matches('/').to_string();
        let base = reqwest::Url::parse(&base_url)
            .ok()
            .filter(|u| u.query().is_none() && u.fragment().is_none());
        Ok(Self {
            http,
            base_url,
            base,
            signer,
        })
    }

    /// The token signer, for token-auth clients.
    pub fn signer(&self) -> Option<&std::sync::Arc<TokenSigner>> {
        self.signer.as_ref()
    }

    /// APNs refused the provider token `refused` carried (`ExpiredProviderToken`): the
    /// next request carries a freshly signed one ([`TokenSigner::renew`]). `false` for a
    /// certificate client, which has nothing to renew.
    pub fn renew(&self, refused: CredentialTag) -> bool {
        self.signer.as_ref().is_some_and(|s| s.renew(refused))
    }

    /// Sends one push; HTTP errors are a [`Response`], only transport failures are `Err`.
    pub async fn send(&self, req: &ApnsRequest) -> Result<Response> {
        let rb = match &self.base {
            Some(base) => {
                let mut url = base.clone();
                match base.path() {
                    "/" | "" => url.set_path(&req.path),
                    prefix => url.set_path(&format!("{prefix}{}", req.path)),
                }
                self.http.post(url)
            }
            None => self.http.post(format!("{}{}", self.base_url, req.path)),
        };
        let mut rb = rb
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(req.body.clone());
        for (name, value) in &req.headers {
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                return Err(Error::Transport(format!("invalid header {name}")));
            };
            rb = rb.header(n, v);
        }
        let mut credential = None;
        if let Some(signer) = &self.signer {
            let (jwt, tag) = signer.bearer()?;
            // Not marked sensitive: HPACK then indexes the JWT, which is the same for
            // every push on this connection for up to an hour.
            let value = HeaderValue::from_str(&format!("bearer {jwt}"))
                .map_err(|_| Error::TokenKey("the provider token is not a header value".into()))?;
            rb = rb.header(reqwest::header::AUTHORIZATION, value);
            credential = Some(tag);
        }
        crate::provider::send(rb, credential)
            .await
            .map_err(Error::Transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY1: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n";
    const KEY8: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    #[test]
    fn pem_shape_checks() {
        assert!(check_certificate_pem(&format!("{CERT}{KEY1}")).is_ok());
        assert!(check_certificate_pem(&format!("Bag Attributes\n  x: y\n{KEY8}{CERT}")).is_ok());
        let no_key = check_certificate_pem(CERT).expect_err("no key");
        assert!(no_key.to_string().contains("no private key"));
        assert!(check_certificate_pem(KEY8).is_err());
        let two = check_certificate_pem(&format!("{CERT}{KEY1}{KEY8}")).expect_err("two keys");
        assert!(two.to_string().contains("2 private keys"));
        let enc = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(check_certificate_pem(&format!("{CERT}{enc}")).is_err());
    }

    #[test]
    fn auth_debug_hides_the_pem() {
        let a = Auth::Certificate {
            pem: Secret::new(format!("{CERT}{KEY1}")),
        };
        assert!(!format!("{a:?}").contains("MIIE"));
    }

    const P8: &[u8] = include_bytes!("../../pusher-core/tests/data/token-key.p8");

    #[test]
    fn a_refused_token_is_renewed_once() {
        let signer = TokenSigner::new("ABCDE12345", "ABCDE12345", P8, 55).expect("signer");
        let (jwt1, tag1) = signer.bearer().expect("sign");
        assert_eq!(signer.bearer().expect("cached"), (jwt1.clone(), tag1));
        assert!(signer.renew(tag1), "the current token is dropped");
        assert!(!signer.renew(tag1), "already renewed");
        let (jwt2, tag2) = signer.bearer().expect("sign again");
        assert_ne!(tag2, tag1);
        assert_ne!(jwt2, jwt1, "a freshly signed JWT");
        // A late refusal of the old token keeps the new one.
        assert!(!signer.renew(tag1));
        assert_eq!(signer.bearer().expect("cached").1, tag2);
    }

    #[test]
    fn a_burst_of_refusals_signs_one_new_token() {
        let signer = TokenSigner::new("ABCDE12345", "ABCDE12345", P8, 55).expect("signer");
        let (_, refused) = signer.bearer().expect("sign");
        let barrier = std::sync::Barrier::new(32);
        let after: Vec<(bool, CredentialTag)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..32)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let dropped = signer.renew(refused);
                        (dropped, signer.bearer().expect("sign").1)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(after.iter().filter(|(dropped, _)| *dropped).count(), 1);
        let tags: std::collections::HashSet<_> = after.iter().map(|(_, t)| *t).collect();
        assert_eq!(tags.len(), 1, "every push retries with the same new JWT");
        assert!(!tags.contains(&refused));
    }

    #[test]
    fn renewals_within_one_second_still_give_new_tokens() {
        let signer = TokenSigner::new("ABCDE12345", "ABCDE12345", P8, 55).expect("signer");
        // An hour ahead of the signing in `new`, on a whole second.
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 3600;
        let now = UNIX_EPOCH + Duration::from_secs(secs);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..4 {
            let (jwt, tag) = signer.bearer_at(now).expect("sign");
            assert!(seen.insert(jwt), "a new JWT each renewal");
            signer.renew(tag);
        }
        // Past the lead, no further ahead of the clock.
        for _ in 0..10 {
            let (_, tag) = signer.bearer_at(now).expect("sign");
            signer.renew(tag);
        }
        let (jwt, _) = signer.bearer_at(now).expect("sign");
        let claims = jwt.split('.').nth(1).expect("claims");
        use base64::Engine as _;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(claims["iat"], secs + MAX_IAT_LEAD_SECS);
    }

    #[test]
    fn tokens_are_resigned_after_the_refresh_period() {
        let signer = TokenSigner::new("ABCDE12345", "ABCDE12345", P8, 5).expect("signer");
        let t0 = SystemTime::now();
        let (_, first) = signer.bearer_at(t0).expect("sign");
        // Clamped to Apple's 20-minute minimum.
        let later = t0 + MIN_TOKEN_REFRESH - Duration::from_secs(1);
        assert_eq!(signer.bearer_at(later).expect("cached").1, first);
        let (_, second) = signer.bearer_at(t0 + MIN_TOKEN_REFRESH).expect("re-signed");
        assert_ne!(second, first);
    }

    #[test]
    fn token_ids_are_checked() {
        assert!(TokenSigner::new("short", "ABCDE12345", b"x", 55).is_err());
        assert!(TokenSigner::new("ABCDE12345", "ABCDE12345", b"not a key", 55).is_err());
    }
}
