//! Convergence of the model under concurrent offline edits: several replicas apply random
//! operations, exchange changes in random pairings, and finally all merge. They must end
//! identical (same heads, same materialised records) and nothing anyone did may be lost: every
//! created record exists, attendance is the sum of every increment, every text insertion is there.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::{BTreeMap, BTreeSet};

use phakhi_core::model::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;

#[derive(Clone, Debug)]
enum Op {
    CreateActivity {
        replica: usize,
        attendance: i64,
    },
    Retitle {
        replica: usize,
        target: usize,
        title: u8,
    },
    Archive {
        replica: usize,
        target: usize,
    },
    Increment {
        replica: usize,
        target: usize,
        delta: i64,
    },
    InsertText {
        replica: usize,
        target: usize,
        at_end: bool,
    },
    SetAudiences {
        replica: usize,
        target: usize,
        mask: u8,
    },
    CreateMember {
        replica: usize,
    },
    RenameMember {
        replica: usize,
        target: usize,
        alias: u8,
    },
    Sync {
        from: usize,
        to: usize,
    },
}

fn op(replicas: usize) -> impl Strategy<Value = Op> {
    let r = 0..replicas;
    prop_oneof![
        (r.clone(), 0..50i64).prop_map(|(replica, attendance)| Op::CreateActivity {
            replica,
            attendance
        }),
        (r.clone(), any::<usize>(), any::<u8>()).prop_map(|(replica, target, title)| {
            Op::Retitle {
                replica,
                target,
                title,
            }
        }),
        (r.clone(), any::<usize>()).prop_map(|(replica, target)| Op::Archive { replica, target }),
        (r.clone(), any::<usize>(), 1..20i64).prop_map(|(replica, target, delta)| {
            Op::Increment {
                replica,
                target,
                delta,
            }
        }),
        (r.clone(), any::<usize>(), any::<bool>()).prop_map(|(replica, target, at_end)| {
            Op::InsertText {
                replica,
                target,
                at_end,
            }
        }),
        (r.clone(), any::<usize>(), any::<u8>()).prop_map(|(replica, target, mask)| {
            Op::SetAudiences {
                replica,
                target,
                mask,
            }
        }),
        r.clone().prop_map(|replica| Op::CreateMember { replica }),
        (r.clone(), any::<usize>(), any::<u8>()).prop_map(|(replica, target, alias)| {
            Op::RenameMember {
                replica,
                target,
                alias,
            }
        }),
        (r.clone(), r).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>, u64)> {
    (3usize..=5).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..60), any::<u64>()))
}

fn edit(message: &str) -> Edit {
    Edit::new(
        message,
        time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    )
}

const TITLES: [&str; 4] = ["ประชุมแกนนำ", "รณรงค์ต่อต้านโกง", "อบรมเยาวชน", "เวทีภาคเอกชน"];

struct Replica {
    province: ProvinceDoc,
    activities: ActivitiesDoc,
}

/// What the replicas did, to check that none of it was lost.
#[derive(Default)]
struct Ledger {
    activities: BTreeSet<ActivityId>,
    members: BTreeSet<MemberId>,
    attendance: BTreeMap<ActivityId, i64>,
    tokens: BTreeMap<ActivityId, Vec<String>>,
    archived: BTreeSet<ActivityId>,
    titles: BTreeMap<ActivityId, BTreeSet<String>>,
}

fn activity_ids(doc: &ActivitiesDoc) -> Vec<ActivityId> {
    let all = ActivityFilter {
        include_archived: true,
        ..Default::default()
    };
    doc.list(&all).unwrap().into_iter().map(|a| a.id).collect()
}

fn pick<T: Copy>(items: &[T], index: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[index % items.len()])
}

fn run(replicas: usize, ops: &[Op], seed: u64) -> std::result::Result<(), TestCaseError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let code = ProvinceCode::parse("TH-44").unwrap();
    let mut ledger = Ledger::default();

    // A shared starting point: one organiser, one seed activity, forked to every device.
    let mut province = ProvinceDoc::new(code, &edit("create"), &mut rng).unwrap();
    let organiser = province
        .add_member(
            NewMember {
                alias: "แกนนำ".into(),
                role: MemberRole::CoreLeader,
                centre: None,
                joined: Date::from_ymd(2019, 1, 1).unwrap(),
            },
            &edit("member"),
            &mut rng,
        )
        .unwrap();
    ledger.members.insert(organiser);
    let mut activities = ActivitiesDoc::new(code, 2019, &edit("create"), &mut rng).unwrap();
    let new = |title: &str, attendance: i64| NewActivity {
        kind: ActivityKind::Campaign,
        audiences: BTreeSet::new(),
        title: title.into(),
        description: "เริ่ม".into(),
        date: Date::from_ymd(2019, 7, 1).unwrap(),
        district: "บรบือ".into(),
        attendance,
        organiser,
        centre: None,
    };
    let seeded = activities
        .create(&province, new("กิจกรรมแรก", 3), &edit("seed"), &mut rng)
        .unwrap();
    ledger.activities.insert(seeded);
    ledger.attendance.insert(seeded, 3);
    ledger
        .titles
        .entry(seeded)
        .or_default()
        .insert("กิจกรรมแรก".into());

    let mut devices: Vec<Replica> = (0..replicas)
        .map(|_| Replica {
            province: province.fork_replica(&mut rng),
            activities: activities.fork_replica(&mut rng),
        })
        .collect();

    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::CreateActivity {
                replica,
                attendance,
            } => {
                let d = &mut devices[replica];
                let title = format!("กิจกรรม {step}");
                let id = d
                    .activities
                    .create(
                        &d.province,
                        new(&title, attendance),
                        &edit("create"),
                        &mut rng,
                    )
                    .unwrap();
                ledger.activities.insert(id);
                ledger.attendance.insert(id, attendance);
                ledger.titles.entry(id).or_default().insert(title);
            }
            Op::Retitle {
                replica,
                target,
                title,
            } => {
                let d = &mut devices[replica];
                if let Some(id) = pick(&activity_ids(&d.activities), target) {
                    let title = TITLES[usize::from(title) % TITLES.len()].to_owned();
                    let update = ActivityUpdate {
                        title: Some(title.clone()),
                        ..Default::default()
                    };
                    d.activities
                        .update(&d.province, id, update, &edit("retitle"))
                        .unwrap();
                    ledger.titles.entry(id).or_default().insert(title);
                }
            }
            Op::Archive { replica, target } => {
                let d = &mut devices[replica];
                if let Some(id) = pick(&activity_ids(&d.activities), target) {
                    d.activities.archive(id, &edit("archive")).unwrap();
                    ledger.archived.insert(id);
                }
            }
            Op::Increment {
                replica,
                target,
                delta,
            } => {
                let d = &mut devices[replica];
                if let Some(id) = pick(&activity_ids(&d.activities), target) {
                    d.activities
                        .add_attendance(id, delta, &edit("count"))
                        .unwrap();
                    *ledger.attendance.entry(id).or_default() += delta;
                }
            }
            Op::InsertText {
                replica,
                target,
                at_end,
            } => {
                let d = &mut devices[replica];
                if let Some(id) = pick(&activity_ids(&d.activities), target) {
                    let token = format!("⟨ก{step}ข⟩");
                    let at = if at_end {
                        d.activities.get(id).unwrap().description.chars().count()
                    } else {
                        0
                    };
                    d.activities
                        .splice_description(id, at, 0, &token, &edit("text"))
                        .unwrap();
                    ledger.tokens.entry(id).or_default().push(token);
                }
            }
            Op::SetAudiences {
                replica,
                target,
                mask,
            } => {
                let d = &mut devices[replica];
                if let Some(id) = pick(&activity_ids(&d.activities), target) {
                    let audiences = Audience::ALL
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, a)| *a)
                        .collect();
                    let update = ActivityUpdate {
                        audiences: Some(audiences),
                        ..Default::default()
                    };
                    d.activities
                        .update(&d.province, id, update, &edit("audiences"))
                        .unwrap();
                }
            }
            Op::CreateMember { replica } => {
                let d = &mut devices[replica];
                let id = d
                    .province
                    .add_member(
                        NewMember {
                            alias: format!("สมาชิก {step}"),
                            role: MemberRole::Member,
                            centre: None,
                            joined: Date::from_ymd(2019, 2, 1).unwrap(),
                        },
                        &edit("member"),
                        &mut rng,
                    )
                    .unwrap();
                ledger.members.insert(id);
            }
            Op::RenameMember {
                replica,
                target,
                alias,
            } => {
                let d = &mut devices[replica];
                let ids: Vec<MemberId> = d.province.members(true).iter().map(|m| m.id).collect();
                if let Some(id) = pick(&ids, target) {
                    let update = MemberUpdate {
                        alias: Some(format!("นามแฝง {alias}")),
                        ..Default::default()
                    };
                    d.province
                        .update_member(id, update, &edit("rename"))
                        .unwrap();
                }
            }
            Op::Sync { from, to } => {
                if from != to {
                    let (a, b) = two(&mut devices, to, from);
                    a.activities.merge(&mut b.activities).unwrap();
                    a.province.merge(&mut b.province).unwrap();
                }
            }
        }
    }

    // Everyone meets everyone, in a random order, twice round.
    let mut order: Vec<usize> = (0..replicas).collect();
    order.shuffle(&mut rng);
    for _ in 0..2 {
        for window in order.windows(2) {
            let (a, b) = two(&mut devices, window[1], window[0]);
            a.activities.merge(&mut b.activities).unwrap();
            a.province.merge(&mut b.province).unwrap();
        }
        order.reverse();
    }

    let all = ActivityFilter {
        include_archived: true,
        ..Default::default()
    };
    let reference = devices[0].activities.list(&all).unwrap();
    let reference_members = devices[0].province.members(true);
    let mut heads = devices[0].activities.doc_mut().get_heads();
    heads.sort();
    for device in devices.iter_mut().skip(1) {
        let mut h = device.activities.doc_mut().get_heads();
        h.sort();
        prop_assert_eq!(&h, &heads, "activities heads differ");
        prop_assert_eq!(device.activities.list(&all).unwrap(), reference.clone());
        prop_assert_eq!(device.province.members(true), reference_members.clone());
    }

    let present: BTreeSet<ActivityId> = reference.iter().map(|a| a.id).collect();
    prop_assert_eq!(&present, &ledger.activities, "an activity was lost");
    let members: BTreeSet<MemberId> = reference_members.iter().map(|m| m.id).collect();
    prop_assert_eq!(&members, &ledger.members, "a member was lost");
    for activity in &reference {
        prop_assert_eq!(activity.attendance, ledger.attendance[&activity.id]);
        prop_assert_eq!(activity.archived, ledger.archived.contains(&activity.id));
        prop_assert!(ledger.titles[&activity.id].contains(&activity.title));
        prop_assert!(activity.description.contains("เริ่ม"));
        for token in ledger.tokens.get(&activity.id).into_iter().flatten() {
            prop_assert!(
                activity.description.contains(token.as_str()),
                "{token} missing from {:?}",
                activity.description
            );
        }
    }
    Ok(())
}

/// Two distinct replicas, mutably.
fn two(devices: &mut [Replica], a: usize, b: usize) -> (&mut Replica, &mut Replica) {
    assert_ne!(a, b);
    if a < b {
        let (left, right) = devices.split_at_mut(b);
        (&mut left[a], &mut right[0])
    } else {
        let (left, right) = devices.split_at_mut(a);
        (&mut right[0], &mut left[b])
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn model_replicas_converge_and_lose_nothing((replicas, ops, seed) in scenario()) {
        run(replicas, &ops, seed)?;
    }
}

#[test]
fn model_convergence_dense_fixed_scenario() {
    // A fixed, busy scenario: every replica edits the same activity before anyone syncs.
    let mut ops = Vec::new();
    for replica in 0..5 {
        ops.push(Op::Increment {
            replica,
            target: 0,
            delta: 1 + replica as i64,
        });
        ops.push(Op::InsertText {
            replica,
            target: 0,
            at_end: replica % 2 == 0,
        });
        ops.push(Op::Retitle {
            replica,
            target: 0,
            title: replica as u8,
        });
        ops.push(Op::CreateActivity {
            replica,
            attendance: 10,
        });
        ops.push(Op::CreateMember { replica });
    }
    run(5, &ops, 7).unwrap();
}
