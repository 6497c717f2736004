//! A shared token sent as is in a header (GitLab's `X-Gitlab-Token`): no MAC, compared with
//! each secret in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Secret, SecretTally, SignatureError, SignatureScheme, SignedRequest, secret_problem};

pub(super) fn check(
    scheme: &SignatureScheme,
    header: &str,
    request: SignedRequest<'_>,
    secrets: &[Secret],
) -> Result<(), SignatureError> {
    let presented = request.single_header(header)?;
    // Comparing digests keeps the comparison constant-time even in the token's length.
    let presented_digest = Sha256::digest(presented.as_bytes());
    let mut tally = SecretTally::default();
    for secret in secrets {
        if let Some(reason) = secret_problem(scheme, secret) {
            tally.skip(reason);
            continue;
        }
        let expected_digest = Sha256::digest(secret.expose().as_bytes());
        tally.compare(bool::from(presented_digest.ct_eq(&expected_digest)));
    }
    tally.verdict()
}

/// The header a sender of this scheme puts on its requests: the secret itself.
pub(super) fn sign(secret: &Secret, header: &str) -> Vec<(String, String)> {
    vec![(header.to_owned(), secret.expose().to_owned())]
}
