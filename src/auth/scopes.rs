//! Token scopes and what each one implies (SPEC §3).

use std::collections::BTreeSet;

/// An application scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    FilesRead,
    FilesWrite,
    TenantAdmin,
    PartnerAdmin,
    AdminAll,
    All,
}

impl Scope {
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

    fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "files:read" => Scope::FilesRead,
            "files:write" => Scope::FilesWrite,
            "tenant:admin" => Scope::TenantAdmin,
            "partner:admin" => Scope::PartnerAdmin,
            "admin:*" => Scope::AdminAll,
            "*" => Scope::All,
            _ => return None,
        })
    }

    /// The scopes this one grants, itself included.
    fn implied(self) -> &'static [Scope] {
        use Scope::*;
        match self {
            All => &[
                All,
                AdminAll,
                PartnerAdmin,
                TenantAdmin,
                FilesWrite,
                FilesRead,
            ],
            AdminAll => &[AdminAll, PartnerAdmin, TenantAdmin, FilesWrite, FilesRead],
            PartnerAdmin => &[PartnerAdmin, TenantAdmin, FilesWrite, FilesRead],
            TenantAdmin => &[TenantAdmin, FilesWrite, FilesRead],
            FilesWrite => &[FilesWrite, FilesRead],
            FilesRead => &[FilesRead],
        }
    }
}

/// The effective scopes of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    granted: BTreeSet<Scope>,
    named: Vec<Scope>,
}

impl Scopes {
    /// Parses a space-separated scope string. OIDC and unknown scopes grant
    /// nothing; a token without any application scope gets `tenant:admin`.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Scopes {
        let mut named: Vec<Scope> = items.into_iter().filter_map(Scope::parse).collect();
        named.sort();
        named.dedup();
        if named.is_empty() {
            named.push(Scope::TenantAdmin);
        }
        let granted = named
            .iter()
            .flat_map(|s| s.implied().iter().copied())
            .collect();
        Scopes { granted, named }
    }

    pub fn allows(&self, needed: Scope) -> bool {
        self.granted.contains(&needed)
    }

    /// The application scopes the token carries (after the default).
    pub fn names(&self) -> Vec<String> {
        self.named.iter().map(|s| s.as_str().to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_imply_what_the_spec_says() {
        let none = Scopes::parse(["openid", "email"]);
        assert!(none.allows(Scope::TenantAdmin) && none.allows(Scope::FilesWrite));
        assert!(!none.allows(Scope::PartnerAdmin));
        assert_eq!(none.names(), vec!["tenant:admin"]);

        let read = Scopes::parse(["files:read", "openid"]);
        assert!(read.allows(Scope::FilesRead));
        assert!(!read.allows(Scope::FilesWrite) && !read.allows(Scope::TenantAdmin));

        let write = Scopes::parse(["files:write"]);
        assert!(write.allows(Scope::FilesRead) && !write.allows(Scope::TenantAdmin));

        let partner = Scopes::parse(["partner:admin"]);
        assert!(partner.allows(Scope::TenantAdmin) && !partner.allows(Scope::All));

        let admin = Scopes::parse(["admin:*"]);
        assert!(admin.allows(Scope::PartnerAdmin) && !admin.allows(Scope::All));

        let all = Scopes::parse(["*"]);
        assert!(all.allows(Scope::All) && all.allows(Scope::FilesRead));
    }
}
