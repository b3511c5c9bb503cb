//! Property tests of the loaders that read user files (issue 18): the TOML
//! config, architecture/trial specs, durations and intervals, the study
//! journal and the champion's card. Arbitrary bytes and mutations of valid
//! files must never panic; a spec that validates must build and run in
//! libtorch without an error (nothing out of range reaches it).

use std::path::Path;

use proptest::prelude::*;
use trainerd::config::{parse_checkpoint_every, parse_duration, Config, Options};
use trainerd::model::{self, ArchSpec, ConvBlock, InputShape, TrialSpec};

const VALID_CONFIG: &str = r#"seed = 3
preset = "fast"
epochs = 2
target_accuracy = 0.95
min_accuracy = 0.8
max_trials = 4
max_time = "90m"
threads = 1
checkpoint_every = "500,30s"
keep_checkpoints = 3
val_size = 100
batch_size = 64
lr = 0.05
watchdog = "10m"
ladder = "linear,mlp:4"
promote_margin = 0.001
prune_margin = 0.01
webhook = ["http://127.0.0.1:9/hook"]
webhook_events = "all"
"#;

/// A byte-level mutation of `base`: flip, insert, delete or duplicate.
fn mutated(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    prop::collection::vec((0..4u8, 0..len, any::<u8>()), 1..8).prop_map(move |edits| {
        let mut b = base.as_bytes().to_vec();
        for (kind, at, byte) in edits {
            let at = at % b.len().max(1);
            match kind {
                0 if !b.is_empty() => b[at] ^= byte | 1,
                1 => b.insert(at, byte),
                2 if !b.is_empty() => {
                    b.remove(at);
                }
                _ => {
                    let end = (at + 16).min(b.len());
                    let chunk = b[at..end].to_vec();
                    b.splice(at..at, chunk);
                }
            }
        }
        b
    })
}

/// Resolves a config file with these bytes; must return, not panic.
fn resolve_config(dir: &Path, bytes: &[u8]) -> Result<Config, String> {
    let path = dir.join("c.toml");
    std::fs::write(&path, bytes).unwrap();
    Config::resolve(&Options {
        config: Some(path),
        ..Default::default()
    })
    .map_err(|e| e.to_string())
}

fn spec_json(name: &str) -> &'static str {
    let spec = model::preset(name).unwrap();
    Box::leak(serde_json::to_string(&spec).unwrap().into_boxed_str())
}

/// `cases` cases; failures are not persisted into the source tree (the
/// failing input is in the panic message).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn config_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().unwrap();
        let _ = resolve_config(dir.path(), &bytes);
        let _ = Options::parse_file(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_configs_never_panic_and_errors_name_the_file_or_key(bytes in mutated(VALID_CONFIG)) {
        let dir = tempfile::tempdir().unwrap();
        if let Err(e) = resolve_config(dir.path(), &bytes) {
            prop_assert!(e.contains("c.toml") || e.starts_with("config "), "{}", e);
        }
    }

    #[test]
    fn durations_and_intervals_never_panic(text in "\\PC{0,24}", digits in "[0-9]{1,40}(\\.[0-9]{0,5})?(ms|s|m|h|d)?") {
        let _ = parse_duration(&text);
        let _ = parse_checkpoint_every(&text);
        if let Ok(d) = parse_duration(&digits) {
            prop_assert!(d <= trainerd::config::MAX_DURATION);
        }
        let _ = parse_checkpoint_every(&format!("{digits},{digits}"));
    }

    #[test]
    fn spec_bytes_never_panic(text in "\\PC{0,300}", is_toml in any::<bool>()) {
        let _ = model::parse_spec(&text, is_toml, "p");
    }

    #[test]
    fn mutated_specs_never_panic_and_valid_ones_fit(
        bytes in prop_oneof![mutated(spec_json("fast")), mutated(spec_json("reference")), mutated(spec_json("mlp"))],
    ) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(spec) = model::parse_spec(&text, false, "p") {
            let _ = spec.validate_for(mnist());
        }
    }

    #[test]
    fn journal_and_card_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().unwrap();
        let journal = trainerd::search::journal::Journal::path(dir.path());
        std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
        std::fs::write(&journal, &bytes).unwrap();
        let _ = trainerd::search::journal::Journal::open_read_only(dir.path());
        let _ = trainerd::search::journal::Journal::open(dir.path());
        std::fs::create_dir_all(dir.path().join("best")).unwrap();
        std::fs::write(dir.path().join("best/model.json"), &bytes).unwrap();
        let _ = trainerd::pipeline::promote::load_card(dir.path());
        let _ = trainerd::status::collect(dir.path());
    }
}

fn mnist() -> InputShape {
    InputShape {
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
    }
}

/// Blocks drawn from ranges wider than the valid ones (kernels past the
/// feature map, negative and huge padding, pools on tiny maps).
fn block() -> impl Strategy<Value = ConvBlock> {
    (
        1i64..12,
        prop_oneof![3 => Just(1i64), 6 => 1i64..10, 1 => -1i64..1, 1 => 30i64..40],
        prop_oneof![2 => Just(None), 2 => Just(Some(0)), 2 => (0i64..6).prop_map(Some), 1 => (-2i64..0).prop_map(Some)],
        prop_oneof![9 => 1u32..3, 1 => Just(0u32)],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![8 => Just(0.0), 1 => Just(0.5), 1 => Just(1.0)],
    )
        .prop_map(
            |(channels, kernel, padding, convs, batch_norm, pool, pool_first, dropout)| ConvBlock {
                channels,
                kernel,
                padding,
                convs,
                batch_norm,
                pool,
                pool_first,
                dropout,
            },
        )
}

fn arch() -> impl Strategy<Value = ArchSpec> {
    prop_oneof![
        1 => (prop::collection::vec(-1i64..40, 0..3), prop_oneof![Just(0.0), Just(0.3), Just(2.0)])
            .prop_map(|(hidden, dropout)| ArchSpec::Mlp { hidden, dropout }),
        3 => (prop::collection::vec(block(), 1..6), prop::collection::vec(0i64..20, 0..2)).prop_map(
            |(blocks, head)| ArchSpec::Cnn {
                blocks,
                head,
                head_dropout: 0.0,
            }
        ),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    /// The layer walk agrees with libtorch: whatever validates builds and
    /// runs forward and backward on a batch, for any input geometry.
    #[test]
    fn whatever_validates_trains_in_libtorch(
        arch in arch(),
        h in prop_oneof![Just(1i64), Just(2), 1i64..8, 1i64..33],
        w in prop_oneof![Just(1i64), Just(2), 1i64..8, 1i64..33],
    ) {
        let input = InputShape { channels: 1, height: h, width: w, classes: 3 };
        let mut spec: TrialSpec = model::preset("fast").unwrap();
        spec.arch = arch;
        spec.recipe.augment_shift = 0;
        if spec.validate_for(input).is_err() {
            return Ok(());
        }
        let ran = std::panic::catch_unwind(|| {
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let net = model::build(&vs.root(), &spec.arch, input);
            // A batch of one, in training mode: the harshest case for batch norm.
            let x = tch::Tensor::rand([1, 1, h, w], (tch::Kind::Float, tch::Device::Cpu));
            let y = tch::nn::ModuleT::forward_t(&net, &x, true);
            y.sum(tch::Kind::Float).backward();
            y.size()
        });
        match ran {
            Ok(size) => prop_assert_eq!(size, vec![1, 3]),
            Err(_) => prop_assert!(false, "libtorch refused a validated spec: {:?} on {}x{}", spec.arch, h, w),
        }
    }
}

#[test]
fn deeply_nested_files_are_refused_without_overflowing_the_stack() {
    let deep = |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n));
    let dir = tempfile::tempdir().unwrap();
    for n in [1_000, 100_000] {
        let toml = format!("webhook = {}\n", deep("[", "]", n));
        assert!(resolve_config(dir.path(), toml.as_bytes()).is_err());
        assert!(model::parse_spec(&deep("[", "]", n), false, "p").is_err());
        assert!(model::parse_spec(&format!("a = {}", deep("[", "]", n)), true, "p").is_err());
        let inline = format!("a = {}1{}", "{b = ".repeat(n), "}".repeat(n));
        assert!(model::parse_spec(&inline, true, "p").is_err());
    }
}
