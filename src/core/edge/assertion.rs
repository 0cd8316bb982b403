//! Signed assertions from the team's edge: the header, the signature against the issuer's keys
//! (`core::jose`), the claims (`iss`, `aud`, `exp`, `nbf`, `iat`), the developer claim and the
//! mapping. SKELETON: filled in by the assertion work.
