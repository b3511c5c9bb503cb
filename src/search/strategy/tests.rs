//! Tests of `strategy`.

use super::*;
use crate::model::preset;

fn plan(start: &str, ladder: &str, target: f64) -> Plan {
    Plan {
        start: preset(start).unwrap(),
        ladder: parse_ladder(ladder).unwrap(),
        target,
        val_n: 0,
        min_accuracy: target,
        max_trials: 10,
        seed: 7,
        prune: Some(PrunePolicy {
            margin: 0.01,
            eta: 3,
        }),
        input: None,
    }
}

fn done(p: &Proposal, acc: f64) -> Finished {
    Finished {
        spec: p.spec.clone(),
        mv: p.mv,
        rung: p.rung,
        val_accuracy: acc,
        curve: vec![acc; p.spec.recipe.epochs as usize],
        pruned: false,
        diverged: false,
    }
}

#[test]
fn ladder_parses_names_and_epochs() {
    let l = parse_ladder("linear, bn3:12").unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[1].recipe.epochs, 12);
    assert_eq!(l[1].preset, "bn3:12");
    assert!(parse_ladder("linear,nope").unwrap_err().contains("nope"));
    assert!(parse_ladder("bn3:0").is_err());
    assert!(parse_ladder(" , ").is_err());
}

#[test]
fn escalates_along_the_ladder_then_lengthens_then_perturbs() {
    let p = plan("linear", "linear,mlp,fast", 0.99);
    let mut hist = Vec::new();
    let first = p.next(&hist).unwrap();
    assert_eq!((first.mv, first.rung), (Move::Start, Some(0)));
    hist.push(done(&first, 0.90));
    let second = p.next(&hist).unwrap();
    assert_eq!(
        (second.mv, second.spec.preset.as_str()),
        (Move::Escalate, "mlp")
    );
    hist.push(done(&second, 0.95));
    let third = p.next(&hist).unwrap();
    assert_eq!(third.spec.preset, "fast");
    hist.push(done(&third, 0.98));
    let fourth = p.next(&hist).unwrap();
    assert_eq!(fourth.mv, Move::Lengthen);
    assert_eq!(fourth.spec.recipe.epochs, 2 * third.spec.recipe.epochs);
    assert_eq!(fourth.spec.arch, third.spec.arch);
    hist.push(done(&fourth, 0.985));
    let fifth = p.next(&hist).unwrap();
    assert_eq!(fifth.mv, Move::Perturb);
    assert_eq!(
        fifth.spec.recipe.epochs, fourth.spec.recipe.epochs,
        "perturbs the best"
    );
    assert_ne!(fifth.spec, fourth.spec);
}

#[test]
fn stops_at_target_and_at_the_trial_budget() {
    let mut p = plan("linear", "linear,mlp", 0.95);
    let first = p.next(&[]).unwrap();
    assert!(p.next(&[done(&first, 0.96)]).is_none(), "target reached");
    p.max_trials = 1;
    assert!(p.next(&[done(&first, 0.5)]).is_none(), "budget spent");
}

#[test]
fn above_min_accuracy_tunes_instead_of_changing_architecture() {
    // The original project: tweak the architecture below 0.80, aim for 0.95.
    let mut p = plan("linear", "linear,mlp,fast", 0.95);
    p.min_accuracy = 0.80;
    let first = p.next(&[]).unwrap();
    let low = p.next(&[done(&first, 0.70)]).unwrap();
    assert_eq!(low.mv, Move::Escalate);
    let mid = p.next(&[done(&first, 0.85)]).unwrap();
    assert_eq!(mid.mv, Move::Lengthen);
    assert_eq!(mid.spec.arch, first.spec.arch);
}

#[test]
fn start_off_the_ladder_climbs_from_its_first_rung() {
    let mut p = plan("reference", "linear,bn3", 0.999);
    assert_eq!(p.start_rung(), None);
    let first = p.next(&[]).unwrap();
    let next = p.next(&[done(&first, 0.9)]).unwrap();
    assert_eq!(next.spec.preset, "linear");
    p.start = preset("bn3").unwrap();
    assert_eq!(p.start_rung(), Some(1), "matched by preset name");
}

#[test]
fn perturbation_is_deterministic_per_seed_and_trial() {
    let s = preset("bn3").unwrap();
    assert_eq!(perturb(&s, 1, 5, 0), perturb(&s, 1, 5, 0));
    let draws: Vec<TrialSpec> = (0..6).map(|t| perturb(&s, 1, t, 0)).collect();
    assert!(draws.iter().any(|d| d.recipe != draws[0].recipe));
    for d in &draws {
        let ratio = d.recipe.optimizer.lr() / s.recipe.optimizer.lr();
        assert!((0.49..=2.01).contains(&ratio), "lr within 2x: {ratio}");
    }
}

#[test]
fn perturb_avoids_specs_already_tried() {
    let p = plan("fast", "fast", 0.999);
    let first = p.next(&[]).unwrap();
    let mut hist = vec![done(&first, 0.98)];
    let long = p.next(&hist).unwrap();
    hist.push(done(&long, 0.97));
    let a = p.next(&hist).unwrap();
    hist.push(done(&a, 0.5));
    let b = p.next(&hist).unwrap();
    assert_ne!(a.spec, b.spec);
}

#[test]
fn prunes_a_trial_trailing_same_length_peers_at_a_rung() {
    let p = plan("fast", "fast", 0.999);
    let spec = preset("bn3").unwrap();
    let peer = |acc: f64, epochs: u32| {
        let mut s = spec.clone();
        s.recipe.epochs = epochs;
        Finished {
            spec: s,
            mv: Move::Perturb,
            rung: None,
            val_accuracy: acc,
            curve: vec![acc; epochs as usize],
            pruned: false,
            diverged: false,
        }
    };
    let peers = vec![
        peer(0.98, spec.recipe.epochs),
        peer(0.60, spec.recipe.epochs),
    ];
    assert!(
        p.should_prune(&spec, &[0.90], &peers),
        "well below the top third"
    );
    assert!(
        !p.should_prune(&spec, &[0.975], &peers),
        "within the margin"
    );
    assert!(
        !p.should_prune(&spec, &[0.9, 0.9, 0.5], &peers),
        "epoch 3 is no rung"
    );
    let other_len = vec![peer(0.99, spec.recipe.epochs * 2)];
    assert!(
        !p.should_prune(&spec, &[0.5], &other_len),
        "different schedule length"
    );
    let mut off = p.clone();
    off.prune = None;
    assert!(!off.should_prune(&spec, &[0.1], &peers));
}

#[test]
fn after_divergence_the_study_escalates_then_calms_the_learning_rate() {
    let p = plan("fast", "fast,linear", 0.99);
    let first = p.next(&[]).unwrap();
    let mut d = done(&first, 0.0);
    d.diverged = true;
    let next = p.next(std::slice::from_ref(&d)).unwrap();
    assert_eq!(
        (next.mv, next.spec.preset.as_str()),
        (Move::Escalate, "linear")
    );
    let p = plan("fast", "fast", 0.99);
    let retry = p.next(std::slice::from_ref(&d)).unwrap();
    assert_eq!(retry.mv, Move::Perturb);
    let ratio = retry.spec.recipe.optimizer.lr() / first.spec.recipe.optimizer.lr();
    assert!((ratio - 0.1).abs() < 1e-12, "{ratio}");
    let mut good = done(&first, 0.5);
    good.spec = retry.spec.clone();
    assert_eq!(
        best_index(&[d, good]),
        Some(1),
        "a diverged trial is never best"
    );
}

#[test]
fn every_proposal_validates() {
    // A tiny learning rate (perturbing once rounded it to 0), a schedule at the epoch cap.
    let mut p = plan("fast", "fast", 0.999);
    p.start.recipe.optimizer = p.start.recipe.optimizer.with_lr(1e-9);
    p.start.recipe.epochs = crate::model::limits::MAX_EPOCHS;
    p.input = Some(crate::model::InputShape {
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
    });
    let mut hist = vec![];
    for i in 0..8 {
        let next = p.next(&hist).unwrap();
        next.spec
            .validate_for(p.input.unwrap())
            .unwrap_or_else(|e| panic!("{i}: {e}"));
        hist.push(done(&next, 0.5 + f64::from(i) * 0.01));
    }
    assert!(parse_ladder("fast:20000")
        .unwrap_err()
        .contains("recipe.epochs"));
}

#[test]
fn best_is_the_earliest_of_equals() {
    let p = plan("linear", "linear", 0.99);
    let f = p.next(&[]).unwrap();
    assert_eq!(
        best_index(&[done(&f, 0.5), done(&f, 0.7), done(&f, 0.7)]),
        Some(1)
    );
    assert_eq!(best_index(&[]), None);
}

#[test]
fn the_target_counts_on_the_lower_bound_of_the_split() {
    let mut p = plan("fast", "linear,fast,bn3", 0.92);
    p.val_n = 5000;
    let first = p.next(&[]).unwrap();
    // 0.9218 on 5,000: the point value is above 0.92, the bound (0.914) is not.
    let next = p.next(&[done(&first, 0.9218)]);
    assert!(
        next.is_some(),
        "the point value alone does not stop the study"
    );
    assert_eq!(
        next.unwrap().mv,
        Move::Escalate,
        "below min_accuracy by the bound"
    );
    assert!(
        p.next(&[done(&first, 0.93)]).is_none(),
        "0.93 on 5,000 certifies"
    );
    p.val_n = 0;
    assert!(
        p.next(&[done(&first, 0.9218)]).is_none(),
        "no size: the point value"
    );
}
