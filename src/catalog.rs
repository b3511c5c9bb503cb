//! `trainerd presets`: every preset with what it builds for a data set: the
//! input it sees, its layers, its parameter count and recipe, or why it
//! does not fit. Without `--data-dir` the input is MNIST's (1×28×28, 10
//! classes); with it the data set is read as `train` reads it.

use std::path::PathBuf;

use serde::Serialize;

use crate::data::{Dataset, LoadOptions};
use crate::model::{preset, InputShape, TrialSpec, PRESET_NAMES};

/// What `presets` prints.
pub struct CatalogRequest {
    /// Full specs as JSON instead of a table.
    pub json: bool,
    /// The data set to build for (read in full: its shape and class count
    /// are what the loader finds), else MNIST's input.
    pub data: Option<(PathBuf, LoadOptions)>,
}

/// The input every preset is shown for when no data set is named.
const MNIST: InputShape = InputShape {
    channels: 1,
    height: 28,
    width: 28,
    classes: 10,
};

/// One preset built for one input.
#[derive(Serialize)]
struct Build {
    spec: TrialSpec,
    /// Trainable parameters; absent when the preset does not fit.
    parameters: Option<u64>,
    /// Why the preset cannot be built for this input.
    error: Option<String>,
}

/// The input a data set gives, with a one-line description of it.
struct Input {
    shape: InputShape,
    about: String,
    class_names: Vec<String>,
}

/// Prints the presets (exit 65 when the named data set cannot be read).
pub fn run(req: &CatalogRequest) -> anyhow::Result<()> {
    let input = match &req.data {
        Some((dir, opts)) => describe(dir, &Dataset::load(dir, opts)?),
        None => Input {
            shape: MNIST,
            about: "MNIST's input (1×28×28, 10 classes); --data-dir DIR shows a data set's".into(),
            class_names: Vec::new(),
        },
    };
    let builds: Vec<Build> = PRESET_NAMES
        .iter()
        .filter_map(|(name, _)| preset(name))
        .map(|spec| build(spec, input.shape))
        .collect();
    if req.json {
        print_json(req.data.is_some(), &input, &builds)
    } else {
        print_table(&input, &builds);
        Ok(())
    }
}

fn describe(dir: &std::path::Path, data: &Dataset) -> Input {
    let [channels, height, width] = data.image_shape();
    let shape = InputShape {
        channels,
        height,
        width,
        classes: data.num_classes,
    };
    let about = format!(
        "{}: {channels}×{height}×{width}, {} classes, {} train / {} validation / {} test images",
        dir.display(),
        data.num_classes,
        data.train.len(),
        data.val.len(),
        data.test.len()
    );
    Input {
        shape,
        about,
        class_names: data.class_names.clone(),
    }
}

fn build(spec: TrialSpec, input: InputShape) -> Build {
    match spec.validate_for(input) {
        Ok(fp) => Build {
            spec,
            parameters: Some(fp.parameters),
            error: None,
        },
        Err(e) => Build {
            spec,
            parameters: None,
            error: Some(e.to_string()),
        },
    }
}

/// Without a data set: the specs alone, as before (spec files for `trial`).
/// With one: the input and each spec with its parameter count.
fn print_json(with_data: bool, input: &Input, builds: &[Build]) -> anyhow::Result<()> {
    let text = if with_data {
        let [c, h, w] = [input.shape.channels, input.shape.height, input.shape.width];
        serde_json::to_string_pretty(&serde_json::json!({
            "input": {"shape": [c, h, w], "classes": input.shape.classes,
                      "class_names": input.class_names},
            "presets": builds,
        }))?
    } else {
        let specs: Vec<&TrialSpec> = builds.iter().map(|b| &b.spec).collect();
        serde_json::to_string_pretty(&specs)?
    };
    println!("{text}");
    Ok(())
}

fn print_table(input: &Input, builds: &[Build]) {
    println!("built for {}", input.about);
    let numbered = input
        .class_names
        .iter()
        .enumerate()
        .all(|(i, n)| *n == i.to_string());
    if !numbered {
        println!("classes: {}", input.class_names.join(", "));
    }
    for ((name, about), b) in PRESET_NAMES.iter().zip(builds) {
        println!("\n{name:<10} {about}");
        let arch = crate::report::describe_arch(&b.spec.arch);
        match (&b.error, b.parameters) {
            (Some(e), _) => println!("{:10} does not fit this input: {e}", ""),
            (None, Some(p)) => println!("{:10} {arch} · {} parameters", "", thousands(p)),
            (None, None) => println!("{:10} {arch}", ""),
        }
        println!(
            "{:10} {}",
            "",
            crate::report::describe_recipe(&b.spec.recipe)
        );
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(7850), "7,850");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn a_larger_rgb_input_grows_every_preset_that_reads_its_pixels() {
        let rgb = InputShape {
            channels: 3,
            height: 32,
            width: 32,
            classes: 10,
        };
        for (name, _) in PRESET_NAMES {
            let spec = preset(name).unwrap();
            let mnist = build(spec.clone(), MNIST).parameters.unwrap();
            let bigger = build(spec, rgb).parameters.unwrap();
            assert!(bigger > mnist, "{name}: {bigger} <= {mnist}");
        }
    }
}
