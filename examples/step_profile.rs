//! Where a training step's time goes: batch gather, forward + loss, backward,
//! optimizer, for a preset, in NCHW or channels-last layout.
//!
//! `cargo run --release --example step_profile -- [PRESET] [THREADS] [STEPS] [LAYOUT]`
//! (defaults: fast 2 400, both layouts; LAYOUT is `nchw` or `channels-last`). Random 28x28 images stand in for MNIST: the cost of
//! a step does not depend on the pixel values. Prints milliseconds per step for
//! each phase and samples/s, once per layout.

use std::time::{Duration, Instant};

use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};
use trainerd::model::{self, InputShape};
use trainerd::optim::Optimizer;

fn main() {
    // As the trainerd binary does at start (train/malloc.rs).
    let tuning = trainerd::train::malloc::tune();
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "fast".into());
    let threads: i32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(2);
    let steps: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(400);
    let layouts: &[bool] = match args.next().as_deref() {
        Some("nchw") => &[false],
        Some("channels-last") => &[true],
        _ => &[false, true],
    };
    let Some(spec) = model::preset(&name) else {
        eprintln!("unknown preset {name:?}");
        std::process::exit(64);
    };
    tch::set_num_threads(threads);
    let input = InputShape {
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
    };
    let batch = spec.recipe.batch_size;
    let images = Tensor::randn([55_000, 1, 28, 28], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(10, [55_000], (Kind::Int64, Device::Cpu));
    println!("preset {name}, batch {batch}, {threads} threads, {steps} steps, malloc {tuning:?}");
    println!(
        "{:<14} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "layout", "gather", "forward", "backward", "optim", "total", "samples/s"
    );
    for &channels_last in layouts {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = model::build(&vs.root(), &spec.arch, input);
        if channels_last {
            model::use_channels_last(&vs);
        }
        let params = vs.trainable_variables();
        let named = params
            .into_iter()
            .enumerate()
            .map(|(i, t)| (format!("p{i:03}"), t))
            .collect();
        let mut opt = Optimizer::new(spec.recipe.optimizer.clone(), named);
        let mut phase = [Duration::ZERO; 4];
        let warmup = 20;
        for step in 0..steps + warmup {
            let t0 = Instant::now();
            let idx = Tensor::randint(55_000, [batch], (Kind::Int64, Device::Cpu));
            let mut x = images.index_select(0, &idx);
            if channels_last {
                x = model::channels_last(&x);
            }
            let y = labels.index_select(0, &idx);
            let t1 = Instant::now();
            let loss = net.forward_t(&x, true).cross_entropy_loss::<Tensor>(
                &y,
                None,
                Reduction::Mean,
                -100,
                spec.recipe.label_smoothing,
            );
            let t2 = Instant::now();
            let grads = opt.gradients(&loss);
            let t3 = Instant::now();
            opt.apply(&grads, 0.01);
            let t4 = Instant::now();
            if step >= warmup {
                for (p, d) in phase.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
                    *p += d;
                }
            }
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / steps as f64;
        let total: Duration = phase.iter().sum();
        println!(
            "{:<14} {:>8.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>10.0}",
            if channels_last {
                "channels-last"
            } else {
                "nchw"
            },
            ms(phase[0]),
            ms(phase[1]),
            ms(phase[2]),
            ms(phase[3]),
            ms(total),
            (steps as i64 * batch) as f64 / total.as_secs_f64()
        );
    }
}
