//! Loads a data dir (default: the shared MNIST copy) and reports how long it took.
//!
//! `cargo run --release --example data_load -- [DIR] [VAL_SIZE]`; on a bad
//! data set it prints the one-line error and exits with its exit code.

use std::path::PathBuf;
use std::time::Instant;

use trainerd::data::{Dataset, LoadOptions};
use trainerd::exit::ExitStatus;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "../shared/data/mnist".into()));
    let val_size = args.next().and_then(|v| v.parse().ok());
    let runs = 5;
    for run in 0..runs {
        let t = Instant::now();
        let opts = LoadOptions {
            val_size,
            ..Default::default()
        };
        match Dataset::load(&dir, &opts) {
            Ok(ds) => {
                let secs = t.elapsed().as_secs_f64();
                if run == 0 {
                    println!(
                        "train {} val {} test {} classes {} shape {:?} norm {} fingerprint {}",
                        ds.train.len(),
                        ds.val.len(),
                        ds.test.len(),
                        ds.num_classes,
                        ds.image_shape(),
                        ds.normalisation.formula("p"),
                        ds.fingerprint
                    );
                }
                println!("load {run}: {:.0} ms", secs * 1e3);
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(i32::from(e.exit_code()));
            }
        }
    }
}
