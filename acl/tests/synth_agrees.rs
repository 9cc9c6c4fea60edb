//! The compiled classifier agrees with the linear reference on the synthetic
//! mixed rule sets the benchmarks use, under every construction option.

use rampart_acl::{reference, synth, Classifier, CompileOptions};

fn agree(n: usize, options: &CompileOptions) {
    let rules = synth::mixed_rules(n, 7 + n as u64);
    let keys = synth::keys(&rules, 4000, 75, 11);
    let c = Classifier::compile_with(&rules, options).expect("compile");
    c.validate().expect("valid");
    let mut out = vec![None; keys.len()];
    c.lookup_bulk(&keys, &mut out);
    for (k, bulk) in keys.iter().zip(&out) {
        let want = reference::first_match(&rules, k);
        assert_eq!(c.lookup(k), want, "key {k:?}");
        assert_eq!(*bulk, want, "bulk, key {k:?}");
    }
}

#[test]
fn mixed_sets_agree_with_reference() {
    for n in [0, 1, 10, 300, 2000] {
        agree(n, &CompileOptions::default());
        agree(n, &CompileOptions { separate: false, ..Default::default() });
        agree(n, &CompileOptions { leaf_size: 1, space_factor: 1, ..Default::default() });
        agree(n, &CompileOptions { leaf_size: 32, space_factor: 16, ..Default::default() });
    }
}
