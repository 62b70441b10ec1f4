//! [`Rule`]: the ids of the rules in `docs/REQUIREMENTS.md` that a refusal cites, as a
//! type, so that a typo is a compile error rather than a log line nobody can look up.

use std::fmt;

/// Defines [`Rule`], its ids and the list of all of them from one table, so that the
/// three cannot disagree.
macro_rules! rules {
    ($($variant:ident => $id:literal),* $(,)?) => {
        /// A rule of `docs/REQUIREMENTS.md` (the `R-` ids) or of this crate (`MCP-1` to
        /// `MCP-3`, `CACHE-1`): which rule refused a request, for logs and spans.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Rule {
            $(#[doc = concat!("`", $id, "`.")] $variant,)*
        }

        impl Rule {
            /// Every rule, in the order of `docs/REQUIREMENTS.md`.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];

            /// The id as `docs/REQUIREMENTS.md` writes it, e.g. `"R-JWT-2"`.
            pub const fn id(self) -> &'static str {
                match self {
                    $(Self::$variant => $id,)*
                }
            }
        }
    };
}

rules! {
    Bear1 => "R-BEAR-1",
    Bear2 => "R-BEAR-2",
    Bear3 => "R-BEAR-3",
    Bear4 => "R-BEAR-4",
    Jwt1 => "R-JWT-1",
    Jwt2 => "R-JWT-2",
    Jwt3 => "R-JWT-3",
    Jwt4 => "R-JWT-4",
    Jwt5 => "R-JWT-5",
    Key1 => "R-KEY-1",
    Key2 => "R-KEY-2",
    Key3 => "R-KEY-3",
    Key4 => "R-KEY-4",
    Key5 => "R-KEY-5",
    Aud1 => "R-AUD-1",
    Aud2 => "R-AUD-2",
    Aud3 => "R-AUD-3",
    Aud4 => "R-AUD-4",
    Aud5 => "R-AUD-5",
    Aud6 => "R-AUD-6",
    Err1 => "R-ERR-1",
    Err2 => "R-ERR-2",
    Err3 => "R-ERR-3",
    Prm1 => "R-PRM-1",
    Prm2 => "R-PRM-2",
    Prm3 => "R-PRM-3",
    Opq1 => "R-OPQ-1",
    Opq2 => "R-OPQ-2",
    Iss1 => "R-ISS-1",
    Iss2 => "R-ISS-2",
    Id1 => "R-ID-1",
    Az1 => "R-AZ-1",
    Az2 => "R-AZ-2",
    Ops1 => "R-OPS-1",
    Ops2 => "R-OPS-2",
    Ops3 => "R-OPS-3",
    Gw1 => "R-GW-1",
    Gw2 => "R-GW-2",
    Gw3 => "R-GW-3",
    Gw4 => "R-GW-4",
    Gw5 => "R-GW-5",
    Mcp4 => "R-MCP-4",
    Mcp5 => "R-MCP-5",
    Mcp6 => "R-MCP-6",
    Mcp7 => "R-MCP-7",
    Dpop1 => "R-DPOP-1",
    Mtls1 => "R-MTLS-1",
    Mcp1 => "MCP-1",
    Mcp2 => "MCP-2",
    Mcp3 => "MCP-3",
    Cache1 => "CACHE-1",
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_id_is_defined_in_the_requirements_document_once() {
        let document = include_str!("../docs/REQUIREMENTS.md");
        for rule in Rule::ALL {
            let defined = document.matches(&format!("\n- {} ", rule.id())).count();
            assert_eq!(defined, 1, "{rule} is defined {defined} times");
        }
    }
}
