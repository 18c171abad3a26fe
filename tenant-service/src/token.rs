//! Access tokens: JWTs (RFC 7519) as compact JWS (RFC 7515) signed with the realm's Ed25519
//! key, algorithm `EdDSA` (RFC 8037).
//!
//! Owns signing, parsing and checking tokens, and checking that a realm's private key and
//! public JWK belong together. Hand-written on top of `ed25519-dalek` (already in the
//! platform) rather than a JWT crate: the JWT crates with EdDSA support change the feature
//! set of crypto crates the whole workspace shares (`zeroize`, `sha2`, `ring`), rebuilding
//! the Temporal and TLS stack. The format is small, and a test holds it to RFC 8037's own
//! example. Must never accept a token whose header names another algorithm, whose
//! signature does not verify strictly, or whose issuer, audience or expiry do not fit.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::RealmKey;

/// The only algorithm this realm signs and accepts.
pub const ALGORITHM: &str = "EdDSA";
/// How long an access token is valid, in seconds.
pub const TOKEN_TTL_SECONDS: i64 = 3600;
/// Clock skew tolerated on `iat`, in seconds.
const IAT_SKEW_SECONDS: i64 = 60;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The tenant's issuer URL.
    pub iss: String,
    /// The user's id.
    pub sub: String,
    /// The tenant id: a token is for this tenant only.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub email: String,
}

/// Why a token or key was refused. Messages name the check, never the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a compact JWS")]
    Malformed,
    #[error("the token's algorithm is not EdDSA")]
    Algorithm,
    #[error("the token was signed with another key")]
    KeyId,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the realm's key is unusable: {0}")]
    Key(&'static str),
}

/// Signs tokens with the realm's private key.
pub struct TokenSigner {
    key: SigningKey,
    key_id: String,
}

impl TokenSigner {
    /// The realm's signer, after checking that its private key matches its public JWK.
    pub fn from_realm(realm: &RealmKey) -> Result<Self, TokenError> {
        let key = SigningKey::from_pkcs8_pem(&realm.private_key_pem)
            .map_err(|_| TokenError::Key("the private key is not an Ed25519 PKCS#8 PEM"))?;
        let published = TokenVerifier::from_jwk(&realm.public_jwk)?;
        if published.key != key.verifying_key() {
            return Err(TokenError::Key(
                "the private key does not match the public JWK",
            ));
        }
        if published.key_id != realm.key_id {
            return Err(TokenError::Key("the JWK's kid is not the realm's key id"));
        }
        Ok(Self {
            key,
            key_id: realm.key_id.clone(),
        })
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = json!({"alg": ALGORITHM, "typ": "JWT", "kid": self.key_id});
        let payload = serde_json::to_vec(claims).expect("claims always serialise");
        sign_compact(&self.key, header.to_string().as_bytes(), &payload)
    }
}

/// Checks tokens against the realm's public key.
pub struct TokenVerifier {
    key: VerifyingKey,
    key_id: String,
}

impl TokenVerifier {
    /// From a public JWK: `kty` OKP, `crv` Ed25519, `x` the key, `kid` its id.
    pub fn from_jwk(jwk: &Value) -> Result<Self, TokenError> {
        if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
            return Err(TokenError::Key("the JWK is not an Ed25519 OKP key"));
        }
        let x = jwk["x"]
            .as_str()
            .ok_or(TokenError::Key("the JWK has no x"))?;
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(x)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(TokenError::Key("the JWK's x is not 32 bytes of base64url"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| TokenError::Key("the JWK's x is not a valid Ed25519 point"))?;
        let key_id = jwk["kid"]
            .as_str()
            .ok_or(TokenError::Key("the JWK has no kid"))?;
        Ok(Self {
            key,
            key_id: key_id.to_owned(),
        })
    }

    /// The token's claims, when its header, signature, issuer, audience and times all fit.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: i64,
    ) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed)
        };
        let header: Value =
            serde_json::from_slice(&decode(header_b64)?).map_err(|_| TokenError::Malformed)?;
        if header["alg"] != ALGORITHM {
            return Err(TokenError::Algorithm);
        }
        // Extensions this code does not understand must be refused (RFC 7515, section 4.1.11).
        if header.get("crit").is_some() {
            return Err(TokenError::Malformed);
        }
        if header["kid"].as_str() != Some(self.key_id.as_str()) {
            return Err(TokenError::KeyId);
        }
        let signature =
            Signature::from_slice(&decode(signature_b64)?).map_err(|_| TokenError::Signature)?;
        let signed = format!("{header_b64}.{payload_b64}");
        self.key
            .verify_strict(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::Signature)?;

        let claims: Claims =
            serde_json::from_slice(&decode(payload_b64)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != issuer {
            return Err(TokenError::Issuer);
        }
        if claims.aud != audience {
            return Err(TokenError::Audience);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat > now + IAT_SKEW_SECONDS {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(claims)
    }
}

/// `base64url(header).base64url(payload).base64url(signature)`.
fn sign_compact(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;

    fn realm_of(key: &SigningKey) -> RealmKey {
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        RealmKey {
            key_id: format!("kid-{}", &x[..8]),
            private_key_pem: Zeroizing::new(key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()),
            public_jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": format!("kid-{}", &x[..8]), "alg": "EdDSA", "use": "sig"}),
        }
    }

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "https://a-o.tenants.localhost:8443".into(),
            sub: "u1".into(),
            aud: "tenant-a".into(),
            exp: now + 60,
            iat: now,
            email: "admin@example.com".into(),
        }
    }

    #[test]
    fn signing_matches_the_rfc_8037_example() {
        // RFC 8037, appendix A.1 (key) and A.4 (signature over "Example of Ed25519 signing").
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let key = SigningKey::from_bytes(&d.try_into().unwrap());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        let jws = sign_compact(&key, br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing");
        assert_eq!(
            jws,
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
             hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }

    #[test]
    fn a_signed_token_verifies_and_every_check_bites() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let realm = realm_of(&key);
        let signer = TokenSigner::from_realm(&realm).unwrap();
        let verifier = TokenVerifier::from_jwk(&realm.public_jwk).unwrap();
        let now = 1_700_000_000;
        let c = claims(now);
        let token = signer.sign(&c);
        assert_eq!(verifier.verify(&token, &c.iss, &c.aud, now), Ok(c.clone()));

        assert_eq!(
            verifier.verify(&token, "https://other", &c.aud, now),
            Err(TokenError::Issuer)
        );
        assert_eq!(
            verifier.verify(&token, &c.iss, "tenant-b", now),
            Err(TokenError::Audience)
        );
        assert_eq!(
            verifier.verify(&token, &c.iss, &c.aud, now + 60),
            Err(TokenError::Expired)
        );
        let early = signer.sign(&Claims {
            iat: now + 3600,
            exp: now + 7200,
            ..c.clone()
        });
        assert_eq!(
            verifier.verify(&early, &c.iss, &c.aud, now),
            Err(TokenError::IssuedInFuture)
        );

        // Another realm's key: its kid differs, and with a forged kid the signature fails.
        let other = realm_of(&SigningKey::generate(&mut rand::rngs::OsRng));
        let foreign = TokenVerifier::from_jwk(&other.public_jwk).unwrap();
        assert_eq!(
            foreign.verify(&token, &c.iss, &c.aud, now),
            Err(TokenError::KeyId)
        );
        let forged = TokenVerifier {
            key: foreign.key,
            key_id: realm.key_id.clone(),
        };
        assert_eq!(
            forged.verify(&token, &c.iss, &c.aud, now),
            Err(TokenError::Signature)
        );

        // A tampered payload, an unsigned token and another algorithm are refused.
        let parts: Vec<&str> = token.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                sub: "root".into(),
                ..c.clone()
            })
            .unwrap(),
        );
        let tampered = format!("{}.{evil}.{}", parts[0], parts[2]);
        assert_eq!(
            verifier.verify(&tampered, &c.iss, &c.aud, now),
            Err(TokenError::Signature)
        );
        let none = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, realm.key_id));
        let unsigned = format!("{none}.{}.", parts[1]);
        assert_eq!(
            verifier.verify(&unsigned, &c.iss, &c.aud, now),
            Err(TokenError::Algorithm)
        );
        assert_eq!(
            verifier.verify("a.b", &c.iss, &c.aud, now),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_realm_whose_keys_do_not_match_is_refused() {
        let one = realm_of(&SigningKey::generate(&mut rand::rngs::OsRng));
        let two = realm_of(&SigningKey::generate(&mut rand::rngs::OsRng));
        let mixed = RealmKey {
            public_jwk: two.public_jwk.clone(),
            ..one.clone()
        };
        assert!(matches!(
            TokenSigner::from_realm(&mixed),
            Err(TokenError::Key(_))
        ));
        let bad_pem = RealmKey {
            private_key_pem: Zeroizing::new("nope".into()),
            ..one
        };
        assert!(matches!(
            TokenSigner::from_realm(&bad_pem),
            Err(TokenError::Key(_))
        ));
    }
}
