//! Application scopes and the implications between them.

use std::fmt;

/// One application scope a route can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `files:read`
    FilesRead,
    /// `files:write`
    FilesWrite,
    /// `tenant:admin`
    TenantAdmin,
    /// `partner:admin`
    PartnerAdmin,
    /// `admin:*`
    AdminAll,
    /// `*`
    All,
}

impl Scope {
    /// Every application scope, narrowest first.
    pub const ALL: [Scope; 6] = [
        Scope::FilesRead,
        Scope::FilesWrite,
        Scope::TenantAdmin,
        Scope::PartnerAdmin,
        Scope::AdminAll,
        Scope::All,
    ];

    /// The scope's name as it appears in a token's `scope` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::FilesRead => "files:read",
            Scope::FilesWrite => "files:write",
            Scope::TenantAdmin => "tenant:admin",
            Scope::PartnerAdmin => "partner:admin",
            Scope::AdminAll => "admin:*",
            Scope::All => "*",
        }
    }

    /// The application scope with this exact name; `None` for OIDC and unknown scopes.
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// This scope together with everything it implies.
    fn closure(self) -> u8 {
        let implied: &[Scope] = match self {
            Scope::FilesRead => &[],
            Scope::FilesWrite => &[Scope::FilesRead],
            Scope::TenantAdmin => &[Scope::FilesWrite, Scope::FilesRead],
            Scope::PartnerAdmin => &[Scope::TenantAdmin, Scope::FilesWrite, Scope::FilesRead],
            Scope::AdminAll => &[
                Scope::PartnerAdmin,
                Scope::TenantAdmin,
                Scope::FilesWrite,
                Scope::FilesRead,
            ],
            Scope::All => &Scope::ALL,
        };
        implied.iter().fold(self.bit(), |acc, s| acc | s.bit())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The effective scopes of a token, implications already applied.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes {
    granted: u8,
    /// The claim itself names `tenant:admin`, `admin:*` or `*`.
    explicit_admin: bool,
}

/// The scopes whose explicit presence in a claim makes its bearer a tenant
/// admin (SPEC §3 "Admin gate"); `partner:admin` is not one of them.
const EXPLICIT_ADMIN: [Scope; 3] = [Scope::TenantAdmin, Scope::AdminAll, Scope::All];

impl Scopes {
    /// Parses a space-separated `scope` claim.
    pub fn parse(raw: &str) -> Scopes {
        Scopes::from_names(raw.split_whitespace())
    }

    /// Builds the effective set from individual scope names.
    ///
    /// OIDC and unknown names grant nothing; when no application scope is
    /// named at all the token gets `tenant:admin`.
    pub fn from_names<I, S>(names: I) -> Scopes
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let named: Vec<Scope> = names
            .into_iter()
            .filter_map(|n| Scope::from_name(n.as_ref()))
            .collect();
        let granted = named.iter().fold(0u8, |acc, s| acc | s.closure());
        if granted == 0 {
            Scopes {
                granted: Scope::TenantAdmin.closure(),
                explicit_admin: false,
            }
        } else {
            Scopes {
                granted,
                explicit_admin: named.iter().any(|s| EXPLICIT_ADMIN.contains(s)),
            }
        }
    }

    /// Whether these scopes permit an action that needs `needed`.
    pub fn allows(&self, needed: Scope) -> bool {
        self.granted & needed.bit() != 0
    }

    /// Whether the claim *explicitly* names `tenant:admin`, `admin:*` or
    /// `*`: ScaiKey's word that the bearer administers the tenant. The
    /// `tenant:admin` a token without application scopes is given does not
    /// count.
    pub fn explicit_tenant_admin(&self) -> bool {
        self.explicit_admin
    }

    /// The effective scope names, narrowest first (what `GET /users/me` shows).
    pub fn names(&self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }

    /// The effective scopes, narrowest first.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        Scope::ALL.into_iter().filter(|s| self.allows(*s))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Scope::as_str))
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn effective(raw: &str) -> Vec<&'static str> {
        Scopes::parse(raw).iter().map(Scope::as_str).collect()
    }

    #[test]
    fn scope_table_applies_every_implication() {
        let table: &[(&str, &[&str])] = &[
            ("files:read", &["files:read"]),
            ("files:write", &["files:read", "files:write"]),
            (
                "tenant:admin",
                &["files:read", "files:write", "tenant:admin"],
            ),
            (
                "partner:admin",
                &["files:read", "files:write", "tenant:admin", "partner:admin"],
            ),
            (
                "admin:*",
                &[
                    "files:read",
                    "files:write",
                    "tenant:admin",
                    "partner:admin",
                    "admin:*",
                ],
            ),
            (
                "*",
                &[
                    "files:read",
                    "files:write",
                    "tenant:admin",
                    "partner:admin",
                    "admin:*",
                    "*",
                ],
            ),
            ("files:read files:write", &["files:read", "files:write"]),
            ("openid email files:read", &["files:read"]),
            ("  files:read\tprofile ", &["files:read"]),
        ];
        for (raw, expected) in table {
            assert_eq!(effective(raw), *expected, "scope claim {raw:?}");
        }
    }

    #[test]
    fn a_token_without_application_scopes_gets_tenant_admin() {
        let tenant_admin = ["files:read", "files:write", "tenant:admin"];
        for raw in [
            "",
            "openid",
            "openid email profile offline_access",
            "files:delete FILES:READ",
        ] {
            assert_eq!(effective(raw), tenant_admin, "scope claim {raw:?}");
        }
    }

    #[test]
    fn only_a_named_admin_scope_is_explicit() {
        for raw in [
            "tenant:admin",
            "admin:*",
            "*",
            "openid files:read tenant:admin",
        ] {
            assert!(Scopes::parse(raw).explicit_tenant_admin(), "{raw:?}");
        }
        for raw in ["", "openid", "files:write", "partner:admin", "files:delete"] {
            assert!(!Scopes::parse(raw).explicit_tenant_admin(), "{raw:?}");
        }
        // The implicit grant still allows the scope; it is just not explicit.
        assert!(Scopes::parse("openid").allows(Scope::TenantAdmin));
    }

    #[test]
    fn narrow_scopes_do_not_grant_wider_ones() {
        let read = Scopes::parse("files:read");
        assert!(read.allows(Scope::FilesRead));
        assert!(!read.allows(Scope::FilesWrite));
        assert!(!read.allows(Scope::TenantAdmin));

        let tenant = Scopes::parse("tenant:admin");
        assert!(!tenant.allows(Scope::PartnerAdmin));
        assert!(!tenant.allows(Scope::All));

        let admin = Scopes::parse("admin:*");
        assert!(admin.allows(Scope::PartnerAdmin));
        assert!(!admin.allows(Scope::All));
    }

    #[test]
    fn names_round_trip_through_from_name() {
        for scope in Scope::ALL {
            assert_eq!(Scope::from_name(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::from_name("openid"), None);
        assert_eq!(
            Scopes::from_names(["files:write"]).names(),
            vec!["files:read".to_owned(), "files:write".to_owned()]
        );
    }
}
