//! Checking an OpenID Connect ID token: a JWS in compact form, signed RS256 or ES256 with a key
//! of the provider's JWKS (RFC 7515, 7517, 7518). `ring` (already rustls' backend) does the
//! cryptography; this file only parses. Unsigned (`none`) and shared-secret (`HS*`) tokens are
//! refused: only the provider holds the private key, so only it can have made the token.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// One key of a provider's `jwks_uri` document.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default, rename = "use")]
    pub usage: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the ID token is not a signed JWT")]
    Malformed,
    #[error("the ID token is signed with {0}; Berth takes RS256 and ES256")]
    Algorithm(String),
    /// The caller may fetch the key set again: the provider may have rotated its keys.
    #[error("no key of the provider's key set matches the ID token")]
    UnknownKey,
    #[error("the ID token's signature does not verify")]
    Signature,
}

/// The claims of `token` (as JSON) once its signature verifies with one of `keys`. What the
/// claims must say (issuer, audience, expiry, nonce) is the caller's to check.
pub fn verify(token: &str, keys: &[Jwk]) -> Result<serde_json::Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| JwtError::Malformed)
    };
    let header: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| JwtError::Malformed)?;
    let signature = decode(signature)?;
    // The signature covers the first two parts exactly as sent.
    let signed = &token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1];
    let wanted_kty = match header.alg.as_str() {
        "RS256" => "RSA",
        "ES256" => "EC",
        other => return Err(JwtError::Algorithm(other.to_owned())),
    };
    let candidates = keys.iter().filter(|key| {
        key.kty == wanted_kty
            && key.usage.as_deref().is_none_or(|usage| usage == "sig")
            && (header.kid.is_none() || key.kid == header.kid)
    });
    let mut any = false;
    for key in candidates {
        any = true;
        if verifies(key, &header.alg, signed.as_bytes(), &signature) {
            let claims = decode(payload)?;
            return serde_json::from_slice(&claims).map_err(|_| JwtError::Malformed);
        }
    }
    Err(if any {
        JwtError::Signature
    } else {
        JwtError::UnknownKey
    })
}

fn verifies(key: &Jwk, alg: &str, message: &[u8], sig: &[u8]) -> bool {
    let bytes = |field: &Option<String>| {
        field
            .as_deref()
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
    };
    match alg {
        "RS256" => {
            let (Some(n), Some(e)) = (bytes(&key.n), bytes(&key.e)) else {
                return false;
            };
            RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok()
        }
        "ES256" => {
            let (Some(x), Some(y)) = (bytes(&key.x), bytes(&key.y)) else {
                return false;
            };
            if key.crv.as_deref() != Some("P-256") || x.len() != 32 || y.len() != 32 {
                return false;
            }
            // SEC 1's uncompressed point: 0x04, then x and y.
            let point = [&[4u8][..], &x, &y].concat();
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, sig)
                .is_ok()
        }
        _ => false,
    }
}

/// Signing, for the tests' stand-in providers: an ES256 key and its JWK.
#[cfg(test)]
pub mod testing {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use ring::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
    };

    #[derive(Debug)]
    pub struct SigningKey {
        pair: EcdsaKeyPair,
        pub kid: String,
    }

    impl SigningKey {
        pub fn generate(kid: &str) -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("a P-256 key");
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("the key just made");
            Self {
                pair,
                kid: kid.to_owned(),
            }
        }

        pub fn jwk(&self) -> serde_json::Value {
            let point = self.pair.public_key().as_ref();
            serde_json::json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            })
        }

        pub fn sign(&self, claims: &serde_json::Value) -> String {
            let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = self
                .pair
                .sign(&SystemRandom::new(), signed.as_bytes())
                .expect("signing");
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use ring::{rand::SystemRandom, signature::RsaKeyPair};
    use serde_json::json;

    use super::{Jwk, JwtError, testing::SigningKey, verify};

    fn jwks(keys: &[serde_json::Value]) -> Vec<Jwk> {
        keys.iter()
            .map(|key| serde_json::from_value(key.clone()).unwrap())
            .collect()
    }

    #[test]
    fn es256_tokens_verify_with_their_key_and_not_another() {
        let key = SigningKey::generate("k1");
        let other = SigningKey::generate("k1");
        let claims = json!({"sub": "ada", "nonce": "n"});
        let token = key.sign(&claims);
        assert_eq!(verify(&token, &jwks(&[key.jwk()])).unwrap(), claims);
        assert_eq!(
            verify(&token, &jwks(&[other.jwk()])),
            Err(JwtError::Signature)
        );
        assert_eq!(
            verify(&token, &jwks(&[SigningKey::generate("k2").jwk()])),
            Err(JwtError::UnknownKey),
            "a kid the set lacks: the caller fetches the set again"
        );
        // A changed payload under the same signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(json!({"sub": "admin", "nonce": "n"}).to_string());
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), &jwks(&[key.jwk()])),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn unsigned_and_shared_secret_tokens_are_refused() {
        let key = SigningKey::generate("k1");
        let encode = |value: serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
        for alg in ["none", "HS256"] {
            let token = format!(
                "{}.{}.",
                encode(json!({"alg": alg, "kid": "k1"})),
                encode(json!({"sub": "admin"}))
            );
            assert_eq!(
                verify(&token, &jwks(&[key.jwk()])),
                Err(JwtError::Algorithm(alg.to_owned()))
            );
        }
        assert_eq!(verify("not-a-jwt", &[]), Err(JwtError::Malformed));
    }

    /// RS256, what Keycloak and Google sign with, with a key `openssl` makes for the test.
    #[test]
    fn rs256_tokens_verify_with_the_modulus_and_exponent() {
        let dir = tempfile::tempdir().unwrap();
        let der = dir.path().join("key.der");
        let made = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .args(["-outform", "DER", "-out"])
            .arg(&der)
            .output()
            .expect("openssl runs");
        assert!(made.status.success(), "{made:?}");
        // OpenSSL writes PKCS#1's RSAPrivateKey in DER here.
        let pair = RsaKeyPair::from_der(&std::fs::read(&der).unwrap()).unwrap();
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
        let jwk = json!({"kty": "RSA", "kid": "r1", "n": URL_SAFE_NO_PAD.encode(&public.n),
                         "e": URL_SAFE_NO_PAD.encode(&public.e)});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": "r1"}).to_string()),
            URL_SAFE_NO_PAD.encode(json!({"sub": "ada"}).to_string())
        );
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signed.as_bytes(),
            &mut sig,
        )
        .unwrap();
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(
            verify(&token, &jwks(&[jwk])).unwrap(),
            json!({"sub": "ada"})
        );
    }
}
