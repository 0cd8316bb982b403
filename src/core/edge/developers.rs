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
    pub fn admits(&self, name: &str, groups: &[&str]) -> bool {
        let _ = (name, groups);
        self.anyone
    }
}
