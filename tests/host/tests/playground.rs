//! The browser playground as people open it: `dist/playground/index.html` from file:// in
//! headless Chromium (Debian's `chromium`, driven by playwright-core from
//! `playground/test/`). The checks are in `playground/test/browser.mjs`: the shipped FireLens
//! sample routed without interaction, an invalid property showing the plugin's error line,
//! partition keys, a config loaded from a file, the EKS preset, a phone-sized viewport, no
//! script errors and no network. Screenshots are kept in `target/playground.png` and
//! `target/playground-phone.png`.

use std::process::Command;

use fanout_testhost::workspace_root;

#[test]
fn the_playground_renders_the_shipped_sample_in_chromium() {
    let root = workspace_root();
    let page = root.join("dist/playground/index.html");
    assert!(
        page.exists(),
        "{} does not exist: run `make playground`",
        page.display()
    );
    let modules = root.join("playground/test/node_modules/playwright-core");
    assert!(
        modules.exists(),
        "playwright-core is not installed: run `make setup` (npm ci in playground/test)"
    );
    let screenshot = root.join("target/playground.png");
    let output = Command::new("node")
        .arg(root.join("playground/test/browser.mjs"))
        .arg(&page)
        .arg(&screenshot)
        .output()
        .expect("node runs (make setup installs it)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{report}");
    assert!(output.status.success(), "{report}");
    assert!(report.contains("8 passed, 0 failed"), "{report}");
    assert!(screenshot.exists());
}
