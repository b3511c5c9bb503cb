//! The live page in a real headless browser (Debian's `chromium`, from
//! scripts/setup-browser.sh, driven over the DevTools protocol by
//! `common::cdp`) on the real binary training an image-folder data set one
//! of whose classes is named like a tag: the page loads with no console
//! error; the running trial's loss curve gains points while it trains; the
//! first promotion appears without a reload; the tag-like class name shows
//! as those characters and adds no element; the body has no horizontal
//! overflow at 1280×800 nor at a phone's 390×844. Screenshots go to
//! `target/test-output/`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::cdp::Browser;
use common::live::{spawn_with_endpoint, stop};
use common::synth_folders::{write_synthetic_folders, FolderSpec};
use common::*;

const EVIL: &str = "<img src=x onerror=alert(1)>";

fn output_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-output")
}

/// Ten classes of folders, the one named `kite` renamed to [`EVIL`].
fn evil_folders(dir: &std::path::Path) {
    let spec = FolderSpec {
        n_train: 1600,
        n_test: 300,
        seed: 5,
        rgb: false,
        side: 28,
        ext: "png",
    };
    write_synthetic_folders(dir, &spec).unwrap();
    for split in ["train", "test"] {
        std::fs::rename(dir.join(split).join("kite"), dir.join(split).join(EVIL)).unwrap();
    }
}

/// No horizontal overflow of the page at this viewport.
const NO_OVERFLOW: &str = "document.documentElement.scrollWidth <= window.innerWidth \
    && document.body.scrollWidth <= window.innerWidth";

#[test]
fn the_live_page_follows_training_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    evil_folders(&data);
    let state = tmp.path().join("state");
    let mut args = one_quick_trial("run", s(&data), s(&state), "fast");
    let epochs = args.iter().position(|a| *a == "--epochs").unwrap() + 1;
    args[epochs] = "3";
    args.extend(["--metrics-addr", "127.0.0.1:0", "--checkpoint-every", "3"]);
    let mut cmd = trainerd(&args);
    // Slow each step down, so that the page sees the curve grow.
    cmd.env("TRAINERD_FAULT_DELAY_MS", "40");
    let log = tmp.path().join("trainerd.log");
    let (mut child, addr) = spawn_with_endpoint(&mut cmd, &log);
    let url = format!("http://{addr}/");

    let mut b = Browser::launch();
    b.viewport(1280, 800, false);
    b.goto(&url);
    b.eval("window.__kept = 'same page'");

    // The running trial's curve grows while it trains.
    let running =
        "(() => { const l = document.querySelector('#chart-loss polyline[data-running]'); \
                   return l ? Number(l.dataset.points) : 0; })()";
    let first = b.wait_for(
        "a running trial's loss curve",
        running,
        Duration::from_secs(120),
    );
    let first = first.as_u64().unwrap();
    let grown = format!("{running} > {first}");
    b.wait_for(
        "the running curve gaining points",
        &grown,
        Duration::from_secs(120),
    );
    b.screenshot(&output_dir().join("page-training-1280x800.png"), false);

    // The promotion reaches the open page.
    let champion = "document.getElementById('champion-line').textContent";
    let line = b.wait_for(
        "the first promotion",
        &format!("{champion}.startsWith('version 1') && {champion}"),
        Duration::from_secs(180),
    );
    assert_eq!(
        b.eval("window.__kept"),
        serde_json::json!("same page"),
        "the page was reloaded"
    );
    assert!(line.as_str().unwrap().contains("trial 0"), "{line}");

    // The tag-like class name is text, and no element came of it.
    let names = "[...document.querySelectorAll('#per-class td.name')].map(td => td.textContent)";
    let shown = b.wait_for(
        "the per-class table",
        &format!("{names}.length === 10 && {names}"),
        Duration::from_secs(30),
    );
    assert!(
        shown.as_array().unwrap().iter().any(|n| n == EVIL),
        "class names shown: {shown}"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('img').length"),
        serde_json::json!(0)
    );
    let text = b.eval("document.body.innerText");
    assert!(text.as_str().unwrap().contains(EVIL), "not shown as text");
    b.wait_for(
        "the study's end",
        "document.getElementById('study-line').textContent.includes('target reached')",
        Duration::from_secs(120),
    );
    b.wait_for(
        "the events list",
        "document.querySelectorAll('#event-list li').length >= 5",
        Duration::from_secs(10),
    );

    let out = output_dir();
    assert_eq!(
        b.eval(NO_OVERFLOW),
        serde_json::json!(true),
        "overflow at 1280x800"
    );
    b.screenshot(&out.join("page-1280x800.png"), false);
    b.screenshot(&out.join("page-1280-full.png"), true);
    b.viewport(390, 844, true);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        b.eval(NO_OVERFLOW),
        serde_json::json!(true),
        "overflow at 390x844"
    );
    b.screenshot(&out.join("page-390x844.png"), false);

    let problems = b.problems();
    assert!(problems.is_empty(), "the page reported: {problems:#?}");
    drop(b);
    let status = stop(&mut child);
    assert_eq!(status.code(), Some(143), "run: {}", read_log(&log));
}
