//! Routing policies of one name and type (Route53's simple, failover, weighted and
//! geolocation record sets), and the rules a plan must keep before it is sent: pure functions,
//! because the test double (moto) checks none of them and real Route53 checks only some.
//!
//! # Guarantees
//! [`validate`] rejects, naming the record set and what to write instead:
//! - a geolocation with a continent *and* a country (Route53 takes one or the other), an
//!   unknown continent code, a subdivision without its country;
//! - a SetIdentifier missing (routed sets) or present (simple sets), or used twice on one
//!   name and type;
//! - two policies mixed on one name and type (e.g. weighted beside failover);
//! - more than one simple set, PRIMARY or SECONDARY, or geolocation per location;
//! - a non-alias PRIMARY without a health check (without one Route53 never fails over);
//! - a weight above 255.
//!
//! [`check_failover_health`] refuses a plan whose PRIMARY and SECONDARY are both unhealthy:
//! Route53 then answers with the PRIMARY, which is not a failover.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::RecordType;

/// PRIMARY or SECONDARY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Primary,
    Secondary,
}

/// How a record set is chosen among the others of its name and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum Routing {
    Simple,
    Failover {
        role: Role,
    },
    Weighted {
        weight: u32,
    },
    /// All `None` is the default location (`*`, whoever matches no other set).
    Geo {
        continent: Option<String>,
        country: Option<String>,
        subdivision: Option<String>,
    },
}

impl Routing {
    /// The policy and its parameter, for messages (`failover PRIMARY`, `weighted 10`).
    pub fn policy_label(&self) -> String {
        match self {
            Routing::Simple => "simple".into(),
            Routing::Failover {
                role: Role::Primary,
            } => "failover PRIMARY".into(),
            Routing::Failover {
                role: Role::Secondary,
            } => "failover SECONDARY".into(),
            Routing::Weighted { weight } => format!("weighted {weight}"),
            Routing::Geo {
                continent,
                country,
                subdivision,
            } => {
                let parts: Vec<&str> = [continent, country, subdivision]
                    .iter()
                    .filter_map(|p| p.as_deref())
                    .collect();
                if parts.is_empty() {
                    "geolocation *".into()
                } else {
                    format!("geolocation {}", parts.join("/"))
                }
            }
        }
    }

    fn policy(&self) -> &'static str {
        match self {
            Routing::Simple => "simple",
            Routing::Failover { .. } => "failover",
            Routing::Weighted { .. } => "weighted",
            Routing::Geo { .. } => "geolocation",
        }
    }
}

/// One record set with its routing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutedSet {
    pub name: String,
    pub rtype: RecordType,
    pub set_identifier: Option<String>,
    pub routing: Routing,
    pub health_check_id: Option<String>,
    /// An alias (to a load balancer, another record): its health comes from the target.
    pub alias: bool,
    pub ttl: u32,
    pub values: Vec<String>,
}

impl RoutedSet {
    fn label(&self) -> String {
        match &self.set_identifier {
            Some(id) => format!("{} {} (set `{id}`)", self.name, self.rtype),
            None => format!("{} {}", self.name, self.rtype),
        }
    }
}

/// A rule a plan breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{set}: {problem}")]
pub struct RoutingError {
    pub set: String,
    pub problem: String,
}

impl RoutingError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        crate::model::ErrorKind::Config
    }
}

/// Route53's continent codes.
pub const CONTINENTS: &[&str] = &["AF", "AN", "AS", "EU", "OC", "NA", "SA"];

fn err(set: &RoutedSet, problem: impl Into<String>) -> RoutingError {
    RoutingError {
        set: set.label(),
        problem: problem.into(),
    }
}

/// Checks the rules of the module doc over every set of a plan (any names and types).
pub fn validate(sets: &[RoutedSet]) -> Result<(), RoutingError> {
    let mut groups: BTreeMap<(String, RecordType), Vec<&RoutedSet>> = BTreeMap::new();
    for s in sets {
        check_one(s)?;
        groups
            .entry((super::fqdn(&s.name), s.rtype))
            .or_default()
            .push(s);
    }
    for group in groups.values() {
        check_group(group)?;
    }
    Ok(())
}

fn check_one(s: &RoutedSet) -> Result<(), RoutingError> {
    match (&s.routing, &s.set_identifier) {
        (Routing::Simple, Some(_)) => {
            return Err(err(
                s,
                "a simple record set has no SetIdentifier; remove it, or give the set a routing policy",
            ));
        }
        (Routing::Simple, None) => {}
        (r, None) => {
            return Err(err(
                s,
                format!(
                    "a {} record set needs a SetIdentifier; add a unique one, e.g. `site-a`",
                    r.policy()
                ),
            ));
        }
        (_, Some(id)) if id.is_empty() || id.len() > 128 => {
            return Err(err(s, "the SetIdentifier must be 1 to 128 characters"));
        }
        _ => {}
    }
    match &s.routing {
        Routing::Geo {
            continent,
            country,
            subdivision,
        } => {
            if continent.is_some() && country.is_some() {
                return Err(err(
                    s,
                    "a geolocation names a continent or a country, not both; write `continent: EU` or `country: DE`",
                ));
            }
            if let Some(c) = continent
                && !CONTINENTS.contains(&c.as_str())
            {
                return Err(err(
                    s,
                    format!(
                        "`{c}` is not a continent code; write one of {}",
                        CONTINENTS.join(", ")
                    ),
                ));
            }
            if let Some(c) = country
                && !(c == "*" || (c.len() == 2 && c.chars().all(|ch| ch.is_ascii_uppercase())))
            {
                return Err(err(
                    s,
                    format!(
                        "`{c}` is not a country code; write two capital letters (ISO 3166-1, e.g. DE) or `*` for the default"
                    ),
                ));
            }
            if subdivision.is_some() && country.is_none() {
                return Err(err(s, "a subdivision needs its country; add `country: US`"));
            }
        }
        Routing::Weighted { weight } if *weight > 255 => {
            return Err(err(
                s,
                format!("weight {weight} is above 255; write 0 to 255"),
            ));
        }
        Routing::Failover {
            role: Role::Primary,
        } if !s.alias && s.health_check_id.is_none() => {
            return Err(err(
                s,
                "a non-alias PRIMARY needs a health check (without one Route53 never fails over); add health_check_id",
            ));
        }
        _ => {}
    }
    if !s.alias && s.values.is_empty() {
        return Err(err(s, "has no values"));
    }
    Ok(())
}

fn check_group(group: &[&RoutedSet]) -> Result<(), RoutingError> {
    let first = group[0];
    if let Some(other) = group
        .iter()
        .find(|s| s.routing.policy() != first.routing.policy())
    {
        return Err(err(
            other,
            format!(
                "mixes a {} policy with the {} policy of {}; one name and type takes one routing policy",
                other.routing.policy(),
                first.routing.policy(),
                first.label()
            ),
        ));
    }
    let mut ids = BTreeSet::new();
    let mut roles = BTreeSet::new();
    let mut locations = BTreeSet::new();
    for s in group {
        if let Some(id) = &s.set_identifier
            && !ids.insert(id.as_str())
        {
            return Err(err(
                s,
                format!(
                    "SetIdentifier `{id}` is used twice on this name and type; give each set its own"
                ),
            ));
        }
        match &s.routing {
            Routing::Simple if group.len() > 1 => {
                return Err(err(
                    s,
                    "a name and type has at most one simple record set; put every value in it",
                ));
            }
            Routing::Failover { role } if !roles.insert(*role) => {
                return Err(err(
                    s,
                    format!("a second {role:?} set; failover takes one PRIMARY and one SECONDARY"),
                ));
            }
            Routing::Geo {
                continent,
                country,
                subdivision,
            } if !locations.insert((continent.clone(), country.clone(), subdivision.clone())) => {
                return Err(err(
                    s,
                    "a second set for the same location; each location is routed once",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a failover plan in which every set of a name and type is unhealthy (`healthy`
/// says whether a health check passes; aliases count as healthy: their target decides).
pub fn check_failover_health(
    sets: &[RoutedSet],
    healthy: &dyn Fn(&str) -> bool,
) -> Result<(), RoutingError> {
    let mut groups: BTreeMap<(String, RecordType), Vec<&RoutedSet>> = BTreeMap::new();
    for s in sets
        .iter()
        .filter(|s| matches!(s.routing, Routing::Failover { .. }))
    {
        groups
            .entry((super::fqdn(&s.name), s.rtype))
            .or_default()
            .push(s);
    }
    for group in groups.values() {
        let ok = |s: &&&RoutedSet| s.alias || s.health_check_id.as_deref().is_none_or(healthy);
        let has = |r: Role| {
            group
                .iter()
                .any(|s| s.routing == Routing::Failover { role: r })
        };
        if has(Role::Primary) && has(Role::Secondary) && !group.iter().any(|s| ok(&s)) {
            return Err(err(
                group[0],
                "PRIMARY and SECONDARY are both unhealthy: Route53 would keep answering with the PRIMARY; bring one site's health check up before switching",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(id: Option<&str>, routing: Routing) -> RoutedSet {
        RoutedSet {
            name: "api.example.test.".into(),
            rtype: RecordType::A,
            set_identifier: id.map(str::to_string),
            routing,
            health_check_id: None,
            alias: false,
            ttl: 30,
            values: vec!["192.0.2.1".into()],
        }
    }

    fn geo(id: &str, continent: Option<&str>, country: Option<&str>) -> RoutedSet {
        set(
            Some(id),
            Routing::Geo {
                continent: continent.map(str::to_string),
                country: country.map(str::to_string),
                subdivision: None,
            },
        )
    }

    fn failover(id: &str, role: Role, hc: Option<&str>) -> RoutedSet {
        let mut s = set(Some(id), Routing::Failover { role });
        s.health_check_id = hc.map(str::to_string);
        s
    }

    #[test]
    fn the_rules() {
        assert!(
            validate(&[
                geo("eu", Some("EU"), None),
                geo("de", None, Some("DE")),
                geo("default", None, Some("*"))
            ])
            .is_ok()
        );
        let e = validate(&[geo("x", Some("EU"), Some("DE"))]).unwrap_err();
        assert!(e.problem.contains("not both"), "{e}");
        assert!(validate(&[geo("x", Some("XX"), None)]).is_err());
        let e = validate(&[geo("a", Some("EU"), None), geo("a", Some("NA"), None)]).unwrap_err();
        assert!(e.problem.contains("used twice"), "{e}");
        let e = validate(&[
            geo("a", Some("EU"), None),
            set(Some("b"), Routing::Weighted { weight: 1 }),
        ])
        .unwrap_err();
        assert!(e.problem.contains("mixes"), "{e}");
        let e = validate(&[failover("p", Role::Primary, None)]).unwrap_err();
        assert!(e.problem.contains("health check"), "{e}");
        let mut alias = failover("p", Role::Primary, None);
        alias.alias = true;
        assert!(validate(&[alias, failover("s", Role::Secondary, None)]).is_ok());
        assert!(
            validate(&[
                failover("p", Role::Primary, Some("hc1")),
                failover("p2", Role::Primary, Some("hc2"))
            ])
            .is_err()
        );
        assert!(validate(&[set(None, Routing::Weighted { weight: 1 })]).is_err());
        assert!(validate(&[set(Some("x"), Routing::Simple)]).is_err());
        assert!(validate(&[set(Some("w"), Routing::Weighted { weight: 256 })]).is_err());
        assert!(validate(&[set(None, Routing::Simple), set(None, Routing::Simple)]).is_err());
    }

    #[test]
    fn both_failover_sites_unhealthy_is_refused() {
        let sets = [
            failover("p", Role::Primary, Some("hc-a")),
            failover("s", Role::Secondary, Some("hc-b")),
        ];
        assert!(check_failover_health(&sets, &|_| true).is_ok());
        assert!(check_failover_health(&sets, &|h| h == "hc-b").is_ok());
        let e = check_failover_health(&sets, &|_| false).unwrap_err();
        assert!(e.problem.contains("both unhealthy"), "{e}");
        assert_eq!(e.kind(), crate::model::ErrorKind::Config);
    }

    fn continent() -> impl Strategy<Value = String> {
        prop::sample::select(CONTINENTS).prop_map(str::to_string)
    }

    fn country() -> impl Strategy<Value = String> {
        "[A-Z]{2}"
    }

    proptest! {
        /// A continent with a country is invalid whatever else the plan holds.
        #[test]
        fn continent_with_country_is_always_invalid(c in continent(), k in country(), others in prop::collection::vec(country(), 0..5)) {
            let mut sets: Vec<RoutedSet> = others.iter().enumerate().map(|(i, k)| geo(&format!("o{i}"), None, Some(k))).collect();
            sets.push(geo("bad", Some(&c), Some(&k)));
            let e = validate(&sets).unwrap_err();
            prop_assert!(e.problem.contains("not both") || e.problem.contains("same location"), "{}", e);
        }

        /// Distinct identifiers and weights in range: valid; then reusing any identifier: invalid.
        #[test]
        fn set_identifiers_are_unique(weights in prop::collection::vec(0u32..=255, 1..8), dup in any::<prop::sample::Index>()) {
            let sets: Vec<RoutedSet> = weights.iter().enumerate().map(|(i, w)| set(Some(&format!("w{i}")), Routing::Weighted { weight: *w })).collect();
            prop_assert!(validate(&sets).is_ok());
            let mut with_dup = sets.clone();
            let copy = sets[dup.index(sets.len())].clone();
            with_dup.push(copy);
            prop_assert!(validate(&with_dup).is_err());
        }

        /// Two policies on one name and type are refused, in any order.
        #[test]
        fn policies_do_not_mix(a in 0usize..3, b in 0usize..3, swap in any::<bool>()) {
            prop_assume!(a != b);
            let make = |k: usize, id: &str| match k {
                0 => set(Some(id), Routing::Weighted { weight: 10 }),
                1 => geo(id, Some("EU"), None),
                _ => failover(id, Role::Secondary, None),
            };
            let mut sets = vec![make(a, "one"), make(b, "two")];
            if swap { sets.reverse(); }
            let e = validate(&sets).unwrap_err();
            prop_assert!(e.problem.contains("mixes"), "{}", e);
        }

        /// Unhealthy everywhere is refused; any healthy set makes the failover plan acceptable.
        #[test]
        fn failover_health(pa in any::<bool>(), sb in any::<bool>()) {
            let sets = [failover("p", Role::Primary, Some("a")), failover("s", Role::Secondary, Some("b"))];
            let ok = check_failover_health(&sets, &|h| if h == "a" { pa } else { sb }).is_ok();
            prop_assert_eq!(ok, pa || sb);
        }
    }
}
