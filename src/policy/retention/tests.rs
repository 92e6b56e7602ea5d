use chrono::{Duration, TimeZone};
use proptest::prelude::*;

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

fn complete(id: &str, at: &str) -> Item {
    Item {
        id: id.into(),
        created_at: t(at),
        status: ItemStatus::Complete,
        verified: false,
        lock: None,
    }
}

fn with_status(mut i: Item, status: ItemStatus) -> Item {
    i.status = status;
    i
}

fn policy(f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::default();
    f(&mut p);
    p
}

/// (id, action, reasons as text), in item order.
fn show(items: &[Item], d: &[Decision]) -> Vec<(String, Action, Vec<String>)> {
    items
        .iter()
        .zip(d)
        .map(|(i, d)| {
            (
                i.id.clone(),
                d.action,
                d.reasons.iter().map(ToString::to_string).collect(),
            )
        })
        .collect()
}

fn kept(items: &[Item], p: &Policy, now: DateTime<Utc>) -> Vec<String> {
    kept_ids(items, &plan(p, items, now)).into_iter().collect()
}

const NOW: &str = "2026-12-01T00:00:00Z";

#[test]
fn empty_policy_keeps_everything() {
    let items = vec![
        complete("a", "2026-01-01T00:00:00Z"),
        with_status(complete("b", "2026-01-02T00:00:00Z"), ItemStatus::Failed),
        with_status(complete("c", "2026-01-03T00:00:00Z"), ItemStatus::Running),
    ];
    for p in [Policy::default(), policy(|p| p.daily = Some(0))] {
        assert!(p.is_empty());
        let d = plan(&p, &items, t(NOW));
        assert!(d.iter().all(|d| d.action == Action::Keep), "{d:?}");
        assert!(d.iter().all(|d| d.reasons.contains(&Reason::NoPolicy)));
    }
}

#[test]
fn keep_last_keeps_the_newest_complete_ones() {
    let items = vec![
        complete("a", "2026-01-01T00:00:00Z"),
        complete("b", "2026-01-02T00:00:00Z"),
        complete("c", "2026-01-03T00:00:00Z"),
        with_status(complete("d", "2026-01-04T00:00:00Z"), ItemStatus::Failed),
        complete("e", "2026-01-05T00:00:00Z"),
        with_status(complete("f", "2026-01-06T00:00:00Z"), ItemStatus::Running),
    ];
    let d = plan(&policy(|p| p.keep_last = Some(2)), &items, t(NOW));
    let s = show(&items, &d);
    assert_eq!(
        s[0],
        ("a".into(), Action::Delete, vec!["no rule keeps it".into()])
    );
    assert_eq!(
        s[1],
        ("b".into(), Action::Delete, vec!["no rule keeps it".into()])
    );
    assert_eq!(
        s[2],
        ("c".into(), Action::Keep, vec!["keep_last 2 (#2)".into()])
    );
    assert_eq!(
        s[3],
        ("d".into(), Action::Delete, vec!["failed run".into()])
    );
    assert_eq!(
        s[4],
        (
            "e".into(),
            Action::Keep,
            vec!["keep_last 2 (#1)".into(), "newest complete".into()]
        )
    );
    assert_eq!(
        s[5],
        (
            "f".into(),
            Action::Keep,
            vec!["running (another process is writing)".into()]
        )
    );
}

#[test]
fn daily_keeps_the_newest_of_each_day() {
    let items = vec![
        complete("d1-morning", "2026-11-18T06:00:00Z"),
        complete("d1-evening", "2026-11-18T18:00:00Z"),
        complete("d2-morning", "2026-11-19T06:00:00Z"),
        complete("d2-evening", "2026-11-19T18:00:00Z"),
        // No snapshot on the 20th: an empty day is skipped, not counted.
        complete("d4-morning", "2026-11-21T06:00:00Z"),
        complete("d4-evening", "2026-11-21T23:59:59Z"),
    ];
    let d = plan(&policy(|p| p.daily = Some(2)), &items, t(NOW));
    assert_eq!(
        kept_ids(&items, &d).into_iter().collect::<Vec<_>>(),
        ["d2-evening", "d4-evening"]
    );
    assert_eq!(
        d[3].reasons,
        [Reason::Period {
            rule: Rule::Daily,
            period: "2026-11-19".into()
        }]
    );
    assert_eq!(d[3].reasons[0].to_string(), "daily 2026-11-19");
}

#[test]
fn a_rule_not_filled_also_keeps_the_oldest_snapshot() {
    // restic's rule: daily 7 over three days keeps the newest of each day, and the oldest
    // snapshot too, so the history kept is as long as possible.
    let items = vec![
        complete("old", "2026-11-18T06:00:00Z"),
        complete("a", "2026-11-18T18:00:00Z"),
        complete("b", "2026-11-19T18:00:00Z"),
        complete("c", "2026-11-20T18:00:00Z"),
    ];
    let d = plan(&policy(|p| p.daily = Some(7)), &items, t(NOW));
    assert!(d.iter().all(|d| d.action == Action::Keep));
    assert_eq!(d[0].reasons, [Reason::Oldest { rule: Rule::Daily }]);
    assert_eq!(
        d[0].reasons[0].to_string(),
        "daily (oldest snapshot, rule not filled)"
    );
    // With exactly three days allowed, the rule is full before the oldest.
    let d = plan(&policy(|p| p.daily = Some(3)), &items, t(NOW));
    assert_eq!(d[0].action, Action::Delete);
}

#[test]
fn periods_are_utc_hours_days_iso_weeks_months_years() {
    let at = t("2027-01-03T23:30:00Z"); // a Sunday: still ISO week 53 of 2026
    assert_eq!(Rule::Hourly.period(at).unwrap(), "2027-01-03T23");
    assert_eq!(Rule::Daily.period(at).unwrap(), "2027-01-03");
    assert_eq!(Rule::Weekly.period(at).unwrap(), "2026-W53");
    assert_eq!(
        Rule::Weekly.period(t("2027-01-04T00:00:00Z")).unwrap(),
        "2027-W01"
    );
    assert_eq!(Rule::Monthly.period(at).unwrap(), "2027-01");
    assert_eq!(Rule::Yearly.period(at).unwrap(), "2027");
    assert_eq!(Rule::Last.period(at), None);
    // An offset timestamp is judged by its UTC time.
    let tokyo = DateTime::parse_from_rfc3339("2027-01-01T08:00:00+09:00")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(Rule::Yearly.period(tokyo).unwrap(), "2026");
}

#[test]
fn weekly_across_a_year_boundary_is_one_week() {
    let items = vec![
        complete("thu", "2026-12-31T12:00:00Z"),
        complete("sun", "2027-01-03T12:00:00Z"),
        complete("mon", "2027-01-04T12:00:00Z"),
    ];
    let d = plan(
        &policy(|p| p.weekly = Some(2)),
        &items,
        t("2027-02-01T00:00:00Z"),
    );
    assert_eq!(
        show(&items, &d)
            .into_iter()
            .map(|(id, a, _)| (id, a))
            .collect::<Vec<_>>(),
        [
            ("thu".to_string(), Action::Delete),
            ("sun".to_string(), Action::Keep),
            ("mon".to_string(), Action::Keep)
        ]
    );
}

#[test]
fn every_reason_is_listed() {
    let items = vec![
        complete("jan", "2026-01-15T00:00:00Z"),
        complete("feb", "2026-02-15T00:00:00Z"),
        complete("now", "2026-11-30T12:00:00Z"),
    ];
    let p = policy(|p| {
        p.keep_last = Some(1);
        p.daily = Some(1);
        p.monthly = Some(2);
        p.yearly = Some(1);
    });
    let d = plan(&p, &items, t(NOW));
    let reasons: Vec<String> = d[2].reasons.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        [
            "keep_last 1 (#1)",
            "daily 2026-11-30",
            "monthly 2026-11",
            "yearly 2026",
            "newest complete"
        ]
    );
    assert_eq!(d[1].reasons[0].to_string(), "monthly 2026-02");
    assert_eq!(d[0].action, Action::Delete);
}

#[test]
fn newest_verified_is_kept_whatever_the_policy() {
    let mut items = vec![
        complete("a", "2026-01-01T00:00:00Z"),
        complete("b", "2026-01-02T00:00:00Z"),
        complete("c", "2026-01-03T00:00:00Z"),
        complete("d", "2026-01-04T00:00:00Z"),
    ];
    items[0].verified = true;
    items[1].verified = true;
    let d = plan(&policy(|p| p.keep_last = Some(1)), &items, t(NOW));
    assert_eq!(d[0].action, Action::Delete, "only the newest verified");
    assert_eq!(d[1].reasons, [Reason::NewestVerified]);
    assert_eq!(d[2].action, Action::Delete);
    assert_eq!(d[3].action, Action::Keep);
}

#[test]
fn unexpired_locks_keep_expired_ones_do_not() {
    let lock = |until: &str| {
        Some(Lock {
            mode: LockMode::Compliance,
            until: t(until),
        })
    };
    let mut items = vec![
        complete("locked", "2026-01-01T00:00:00Z"),
        complete("expired", "2026-01-02T00:00:00Z"),
        with_status(
            complete("failed-locked", "2026-01-03T00:00:00Z"),
            ItemStatus::Failed,
        ),
        complete("new", "2026-01-04T00:00:00Z"),
    ];
    items[0].lock = lock("2026-12-31T00:00:00Z");
    items[1].lock = lock("2026-11-30T00:00:00Z");
    items[2].lock = lock("2026-12-02T00:00:00Z");
    let d = plan(&policy(|p| p.keep_last = Some(1)), &items, t(NOW));
    assert_eq!(
        show(&items, &d)[0].2,
        ["object lock (compliance) until 2026-12-31T00:00:00Z"]
    );
    assert_eq!(d[1].action, Action::Delete);
    assert_eq!(d[2].action, Action::Keep);
    assert_eq!(d[3].action, Action::Keep);
}

#[test]
fn policy_display_and_config_shape() {
    let p: Policy = serde_yaml::from_str(
        "{ keep_last: 3, hourly: 24, daily: 7, weekly: 4, monthly: 12, yearly: 3 }",
    )
    .unwrap();
    assert_eq!(
        p.to_string(),
        "keep_last 3, hourly 24, daily 7, weekly 4, monthly 12, yearly 3"
    );
    assert!(serde_yaml::from_str::<Policy>("{ dayly: 7 }").is_err());
    assert_eq!(Policy::default().to_string(), "none (keep everything)");
}

#[test]
fn ties_are_broken_by_id() {
    let items = vec![
        complete("b", "2026-01-01T00:00:00Z"),
        complete("a", "2026-01-01T00:00:00Z"),
    ];
    assert_eq!(
        kept(&items, &policy(|p| p.keep_last = Some(1)), t(NOW)),
        ["b"]
    );
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

/// Two years after `base()`: every generated snapshot is in the past.
fn now() -> DateTime<Utc> {
    base() + Duration::days(730)
}

fn arb_status() -> impl Strategy<Value = ItemStatus> {
    prop_oneof![
        8 => Just(ItemStatus::Complete),
        1 => Just(ItemStatus::Running),
        1 => Just(ItemStatus::Failed),
    ]
}

fn arb_lock() -> impl Strategy<Value = Option<Lock>> {
    prop_oneof![
        6 => Just(None),
        1 => (any::<bool>(), -100i64..100).prop_map(|(compliance, days)| Some(Lock {
            mode: if compliance { LockMode::Compliance } else { LockMode::Governance },
            until: now() + Duration::days(days),
        })),
    ]
}

/// Snapshots spread over up to two years; some clustered within hours, some days apart.
fn arb_items() -> impl Strategy<Value = Vec<Item>> {
    let minutes = prop_oneof![0i64..(730 * 24 * 60), 0i64..(3 * 24 * 60)];
    prop::collection::vec(
        (minutes, arb_status(), prop::bool::weighted(0.1), arb_lock()),
        0..60,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (m, status, verified, lock))| Item {
                id: format!("s{i:03}"),
                created_at: base() + Duration::minutes(m),
                status,
                verified: verified && status == ItemStatus::Complete,
                lock,
            })
            .collect()
    })
}

fn arb_count() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![2 => Just(None), 1 => Just(Some(0)), 4 => (1u32..6).prop_map(Some)]
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        arb_count(),
        arb_count(),
        arb_count(),
        arb_count(),
        arb_count(),
        arb_count(),
    )
        .prop_map(
            |(keep_last, hourly, daily, weekly, monthly, yearly)| Policy {
                keep_last,
                hourly,
                daily,
                weekly,
                monthly,
                yearly,
            },
        )
}

/// Complete items, newest first, as the planner walks them.
fn newest_first(items: &[Item]) -> Vec<&Item> {
    let mut v: Vec<&Item> = items
        .iter()
        .filter(|i| i.status == ItemStatus::Complete)
        .collect();
    v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    v
}

fn survivors(items: &[Item], d: &[Decision]) -> Vec<Item> {
    items
        .iter()
        .zip(d)
        .filter(|(_, d)| d.action == Action::Keep)
        .map(|(i, _)| i.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decisions_are_consistent(items in arb_items(), p in arb_policy()) {
        let d = plan(&p, &items, now());
        prop_assert_eq!(d.len(), items.len());
        for (item, d) in items.iter().zip(&d) {
            prop_assert!(!d.reasons.is_empty());
            match d.action {
                Action::Keep => prop_assert!(d.reasons.iter().all(Reason::keeps)),
                Action::Delete => {
                    prop_assert_eq!(d.reasons.len(), 1);
                    let expected = if item.status == ItemStatus::Failed { Reason::Failed } else { Reason::Expired };
                    prop_assert_eq!(&d.reasons[0], &expected);
                }
            }
        }
    }

    #[test]
    fn guards_hold(items in arb_items(), p in arb_policy()) {
        let d = plan(&p, &items, now());
        let keep = kept_ids(&items, &d);
        if let Some(newest) = newest_first(&items).first() {
            prop_assert!(keep.contains(&newest.id), "newest complete deleted");
        }
        if let Some(v) = newest_first(&items).into_iter().find(|i| i.verified) {
            prop_assert!(keep.contains(&v.id), "newest verified deleted");
        }
        for (item, d) in items.iter().zip(&d) {
            if item.status == ItemStatus::Running {
                prop_assert_eq!(d.action, Action::Keep, "running deleted");
            }
            if item.lock.is_some_and(|l| l.until > now()) {
                prop_assert_eq!(d.action, Action::Keep, "locked deleted");
            }
            if p.is_empty() {
                prop_assert_eq!(d.action, Action::Keep, "no policy, yet deleted");
            } else if item.status == ItemStatus::Failed && item.lock.is_none_or(|l| l.until <= now()) {
                prop_assert_eq!(d.action, Action::Delete, "failed kept");
            }
        }
    }

    #[test]
    fn keep_last_keeps_exactly_the_n_newest(mut items in arb_items(), n in 1u32..10) {
        for i in &mut items {
            i.verified = false;
            i.lock = None;
        }
        let p = policy(|p| p.keep_last = Some(n));
        let keep = kept_ids(&items, &plan(&p, &items, now()));
        let expected: BTreeSet<String> = newest_first(&items)
            .iter()
            .take(n as usize)
            .map(|i| i.id.clone())
            .chain(items.iter().filter(|i| i.status == ItemStatus::Running).map(|i| i.id.clone()))
            .collect();
        prop_assert_eq!(keep, expected);
    }

    #[test]
    fn period_rules_keep_at_most_n_and_the_newest_of_each_period(items in arb_items(), p in arb_policy()) {
        let d = plan(&p, &items, now());
        let walk = newest_first(&items);
        for (rule, n) in p.rules() {
            let mut periods = BTreeSet::new();
            let mut used = 0u32;
            for (item, d) in items.iter().zip(&d) {
                for r in &d.reasons {
                    match r {
                        Reason::Period { rule: r2, period } if *r2 == rule => {
                            used += 1;
                            prop_assert_eq!(Some(period.clone()), rule.period(item.created_at));
                            prop_assert!(periods.insert(period.clone()), "two kept in {}", period);
                            // No complete snapshot of the same period is newer.
                            let newest = walk.iter().find(|i| rule.period(i.created_at).as_ref() == Some(period));
                            prop_assert_eq!(newest.map(|i| &i.id), Some(&item.id));
                        }
                        Reason::Oldest { rule: r2 } if *r2 == rule => {
                            used += 1;
                            prop_assert_eq!(walk.last().map(|i| &i.id), Some(&item.id));
                        }
                        Reason::Last { .. } if rule == Rule::Last => used += 1,
                        _ => {}
                    }
                }
            }
            prop_assert!(used <= n, "{} kept {} > {}", rule.name(), used, n);
            // A rule that kept fewer than N has seen every period.
            if rule != Rule::Last && used < n && !p.is_empty() {
                let all: BTreeSet<String> = walk.iter().filter_map(|i| rule.period(i.created_at)).collect();
                prop_assert_eq!(&periods, &all);
            }
        }
    }

    #[test]
    fn planning_again_deletes_nothing_more(items in arb_items(), p in arb_policy()) {
        let d = plan(&p, &items, now());
        let left = survivors(&items, &d);
        let again = plan(&p, &left, now());
        prop_assert!(again.iter().all(|d| d.action == Action::Keep), "{:?}", show(&left, &again));
    }

    #[test]
    fn a_newer_snapshot_never_resurrects_a_deleted_one(items in arb_items(), p in arb_policy(), later in 1i64..(40 * 24 * 60)) {
        let before = kept_ids(&items, &plan(&p, &items, now()));
        let newest = items.iter().map(|i| i.created_at).max().unwrap_or_else(base);
        let mut more = items.clone();
        more.push(Item {
            id: "zz-new".into(),
            created_at: newest + Duration::minutes(later),
            status: ItemStatus::Complete,
            verified: false,
            lock: None,
        });
        let after = kept_ids(&more, &plan(&p, &more, now()));
        for id in &after {
            prop_assert!(id == "zz-new" || before.contains(id), "{} came back", id);
        }
        prop_assert!(after.contains("zz-new"));
    }

    #[test]
    fn input_order_does_not_matter(items in arb_items(), p in arb_policy()) {
        let keep = kept_ids(&items, &plan(&p, &items, now()));
        let mut rev = items.clone();
        rev.reverse();
        prop_assert_eq!(keep, kept_ids(&rev, &plan(&p, &rev, now())));
    }
}
