//! Who is a developer, among the identities an edge source proves: listed names, whole domains
//! after `@`, or values of a groups claim.

/// A source's developer mapping (`developers`). At least one rule, or `anyone`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Developers {
    /// Exact names (ASCII case-insensitive for email-like names).
    pub names: Vec<String>,
    /// Domains: a name `user@<domain>` whose whole domain is one of these.
    pub domains: Vec<String>,
    /// The claim holding the user's groups (assertions only).
    pub groups_claim: Option<String>,
    /// A developer is in one of these groups.
    pub groups: Vec<String>,
    /// Everyone the source proves is a developer (an explicit choice, never a default).
    pub anyone: bool,
}

impl Developers {
    /// Whether `name` (with its `groups`, from an assertion's groups claim) is a developer.
    ///
    /// A listed name matches exactly, or ASCII case-insensitively when both are email-like
    /// (hold an `@`). A domain matches the whole domain after the LAST `@` of `name` (ASCII
    /// case-insensitively, a non-empty local part before it): `example.com` admits
    /// `a@example.com`, never `a@evil-example.com`, `a@sub.example.com` nor
    /// `a@example.com@evil.com`. A group matches exactly.
    pub fn admits(&self, name: &str, groups: &[&str]) -> bool {
        if self.anyone {
            return true;
        }
        let email = name.contains('@');
        let by_name = self
            .names
            .iter()
            .any(|n| n == name || (email && n.contains('@') && n.eq_ignore_ascii_case(name)));
        if by_name {
            return true;
        }
        let by_domain = match name.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
            }
            _ => false,
        };
        by_domain || self.groups.iter().any(|g| groups.contains(&g.as_str()))
    }

    /// Whether the mapping reads a groups claim (it lists groups).
    pub fn uses_groups(&self) -> bool {
        !self.groups.is_empty()
    }
}
