//! Shoal's developer entry point.
//!
//! ```text
//! cargo xtask up       run Shoal: `shoal up` (coordinator, storage, local workers, demo job)
//! cargo xtask test     the whole test suite, as CI runs it
//! cargo xtask setup    install the tools the suite needs (idempotent)
//! cargo xtask fuzz     fuzz the wire decoders and the gRPC requests (nightly + cargo-fuzz)
//! cargo xtask bench    the criterion benchmarks
//! cargo xtask proto-baseline   the v1 proto's current form as the `buf breaking` baseline
//! ```
//!
//! Every subcommand first installs what it needs and is missing, with the
//! versions and workarounds recorded in `shared/TOOLCHAIN.md`, so the two
//! commands of the README work on a fresh machine.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod api;
mod bench;
mod peers;
mod peers_table;

/// The trunk release that builds with the pinned rustc (0.22 needs a newer one).
const TRUNK_VERSION: &str = "0.21.14";
const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// The browser worker's page in `www/`, served next to the dashboard.
const WORKER_PAGE_FILES: [&str; 4] = ["worker.html", "shoal-worker.js", "embed.js", "shoal-embed.d.ts"];

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let started = Instant::now();
    let outcome = match args.first().map(String::as_str) {
        Some("up") => up(&args[1..]),
        Some("build") => build(),
        Some("test") => test(),
        Some("setup") => setup(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("proto-baseline") => api::proto_baseline(),
        None | Some("help" | "-h" | "--help") => {
            print_help();
            Ok(())
        }
        Some(other) => Err(format!("unknown subcommand `{other}`; try `cargo xtask help`")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e} (after {:.0?})", started.elapsed());
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         up [ARGS]        run Shoal: `shoal up` (coordinator + storage + local workers + a verified demo job); ARGS go to it\n\
         build            one self-contained `shoal` (release; the dashboard and the worker page inside)\n\
         test             fmt, clippy, native tests (browser workers in Chromium included), wasm32 builds and tests\n\
         setup [--browser] [--gpu] [--trunk] [--all]\n\
         \x20                install missing tools (wasm target and wasm-bindgen-cli always)\n\
         fuzz [--runs N]  run each fuzz target N times (default 1000000) with nightly cargo-fuzz\n\
         bench [ARGS]     cargo bench -p shoal-core; ARGS go to criterion\n\
         bench --browser  browser tab (WebGPU) vs native workers (lavapipe, CPU) on the same jobs\n\
         bench --dashboard  the dashboard's budgets: first-load bytes, time to first data, idle CPU\n\
         bench --gpu [ARGS]  `shoal bench gpu` (ARGS go to it), then the same in a Chromium tab on WebGPU\n\
         bench --peers [--rounds N] [--max-background PCT]\n\
         \x20                Shoal beside Ray, Dask, loopback TCP and the core's bound, one run, one table\n\
         proto-baseline   after a compatible API addition: lint, check, and make it the new `buf breaking` baseline"
    );
}

/// The workspace root (the parent of this crate's folder).
/// The workspace this xtask was run for. `cargo run` sets
/// `CARGO_MANIFEST_DIR` for the process: a target folder shared by several
/// checkouts may hold an xtask binary built in another one, whose
/// compile-time path can be gone.
fn root() -> PathBuf {
    let manifest =
        env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd` with inherited output, as a named step with its duration.
fn step(name: &str, cmd: &mut Command) -> Result {
    println!("\n==> {name}");
    let t = Instant::now();
    let status = cmd.status().map_err(|e| format!("{name}: cannot start {}: {e}", cmd.get_program().display()))?;
    if !status.success() {
        return Err(format!("{name} failed ({status})"));
    }
    println!("    ok: {name} ({:.1?})", t.elapsed());
    Ok(())
}

/// Stdout of a command, if it ran and succeeded.
fn output_of(program: impl AsRef<OsStr>, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).current_dir(root()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have(program: &str) -> bool {
    output_of("sh", &["-c", &format!("command -v {program}")]).is_some()
}

// ---------------------------------------------------------------- tools

fn ensure_wasm_target() -> Result {
    let installed = output_of("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    step("install the wasm32 target", Command::new("rustup").args(["target", "add", WASM_TARGET]).current_dir(root()))
}

/// The Windows target `shoal` is checked for, and its C cross-compiler
/// (ring and blake3 build C for the target even under `cargo check`).
const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";

fn ensure_windows_target() -> Result {
    let installed = output_of("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == WINDOWS_TARGET) {
        step(
            "install the Windows target",
            Command::new("rustup").args(["target", "add", WINDOWS_TARGET]).current_dir(root()),
        )?;
    }
    if !have("x86_64-w64-mingw32-gcc") {
        apt_install(&["gcc-mingw-w64-x86-64"])?;
    }
    Ok(())
}

/// The wasm-bindgen version in Cargo.lock: the CLI must match it exactly.
fn locked_wasm_bindgen_version() -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines.next().and_then(|l| l.trim().strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_owned());
            }
        }
    }
    Err("Cargo.lock has no wasm-bindgen entry".into())
}

/// Whether `program --version` prints `<name> <version>` with this version.
fn has_version(program: &str, version: &str) -> bool {
    output_of(program, &["--version"]).is_some_and(|s| s.split_whitespace().nth(1) == Some(version))
}

/// `cargo install CRATE --version VERSION` (and `--locked` where that works).
fn cargo_install(krate: &str, version: &str, locked: bool, minutes: u32) -> Result {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.args(["install", krate, "--version", version]);
    if locked {
        c.arg("--locked");
    }
    step(&format!("install {krate} {version} (about {minutes} minutes, once)"), &mut c)
}

fn ensure_wasm_bindgen() -> Result {
    let want = locked_wasm_bindgen_version()?;
    if has_version("wasm-bindgen-test-runner", &want) {
        return Ok(());
    }
    // No --locked: with it, resolution fails on webpki-roots (TOOLCHAIN.md).
    cargo_install("wasm-bindgen-cli", &want, false, 7)
}

fn ensure_node() -> Result {
    if have("node") && have("npm") {
        return Ok(());
    }
    apt_install(&["nodejs", "npm"])
}

fn ensure_trunk() -> Result {
    if has_version("trunk", TRUNK_VERSION) {
        return Ok(());
    }
    cargo_install("trunk", TRUNK_VERSION, true, 11)
}

fn apt_install(packages: &[&str]) -> Result {
    let root_user = output_of("id", &["-u"]).is_some_and(|s| s.trim() == "0");
    let sudo: &[&str] = if root_user { &[] } else { &["sudo", "-n"] };
    let run = |args: &[&str]| -> Command {
        let all: Vec<&str> = sudo.iter().chain(args).copied().collect();
        let mut c = Command::new(all[0]);
        c.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    step("apt-get update", &mut run(&["apt-get", "update", "-q"]))?;
    let mut args = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
    args.extend_from_slice(packages);
    step(&format!("apt-get install {}", packages.join(" ")), &mut run(&args))
}

/// Versions of the Python gRPC packages the non-Rust client test uses.
const GRPCIO_VERSION: &str = "1.85.1";

/// A Python with grpcio, grpcio-reflection and grpcio-status for the test
/// of the gRPC API from a non-Rust client (it finds the service by
/// reflection): a virtual environment next to the build outputs, made once.
fn ensure_python_grpc() -> Result<PathBuf> {
    let venv = target_dir().join("shoal-pyenv");
    let python = venv.join("bin").join("python");
    let ready = || output_of(&python, &["-c", "import grpc, grpc_reflection, grpc_status"]).is_some();
    if ready() {
        return Ok(python);
    }
    step("python virtual environment", Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    step(
        "python grpcio + grpcio-reflection + grpcio-status (gRPC client test)",
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("grpcio=={GRPCIO_VERSION}"),
            &format!("grpcio-reflection=={GRPCIO_VERSION}"),
            &format!("grpcio-status=={GRPCIO_VERSION}"),
        ]),
    )?;
    if ready() {
        Ok(python)
    } else {
        Err(format!("{} cannot import grpc after installing it", python.display()))
    }
}

/// The playwright-core release the browser tests drive Chromium with.
const PLAYWRIGHT_VERSION: &str = "1.65.1";

/// Where build outputs go (`CARGO_TARGET_DIR`, else `target/`).
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// An empty temporary folder for a step that runs Chromium (its `TMPDIR`):
/// Chromium leaves a `scoped_dir` of ~50 MB in the temporary folder each
/// time it is killed, which piled up in `/tmp` run after run. Emptied
/// before the step and after it.
fn browser_tmp() -> PathBuf {
    let dir = target_dir().join("browser-tmp");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A `node_modules` folder with playwright-core (the browser tests' driver;
/// it launches the Debian Chromium, it downloads no browser), made once.
fn ensure_playwright() -> Result<PathBuf> {
    let dir = target_dir().join("shoal-node");
    let modules = dir.join("node_modules");
    let manifest = modules.join("playwright-core").join("package.json");
    let installed = std::fs::read_to_string(&manifest).unwrap_or_default();
    if installed.contains(&format!("\"version\": \"{PLAYWRIGHT_VERSION}\"")) {
        return Ok(modules);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    step(
        &format!("npm install playwright-core@{PLAYWRIGHT_VERSION} (browser tests)"),
        Command::new("npm").current_dir(&dir).args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            &format!("playwright-core@{PLAYWRIGHT_VERSION}"),
        ]),
    )?;
    if manifest.is_file() {
        Ok(modules)
    } else {
        Err(format!("npm did not install playwright-core into {}", modules.display()))
    }
}

/// Builds the browser worker's page into `out`: shoal-web for wasm32
/// (release), its JavaScript bindings (wasm-bindgen, `--target web`), and
/// the worker page's static files of `www/` ([`WORKER_PAGE_FILES`]).
fn build_web(out: &Path) -> Result {
    step(
        "shoal-web for wasm32 (release)",
        cargo().args(["build", "-p", "shoal-web", "--target", WASM_TARGET, "--release", "--locked"]),
    )?;
    let wasm = target_dir().join(WASM_TARGET).join("release").join("shoal_web.wasm");
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    step(
        "wasm-bindgen shoal-web",
        Command::new("wasm-bindgen")
            .args(["--target", "web", "--no-typescript", "--out-dir"])
            .arg(out)
            .arg(&wasm)
            .current_dir(root()),
    )?;
    // The worker page is plain static files beside the dashboard's entry in
    // `www/`: Trunk builds only what `index.html` links, so they are copied.
    let www = root().join("www");
    for name in WORKER_PAGE_FILES {
        let (from, to) = (www.join(name), out.join(name));
        std::fs::copy(&from, &to).map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Builds everything the coordinator serves into `out`: the dashboard
/// (Trunk, `www/` + `ui/`) and the browser worker's files (`build_web`).
fn build_site(out: &Path) -> Result {
    ensure_trunk()?;
    step(
        "dashboard (trunk build --release)",
        Command::new("trunk")
            .args(["build", "--release", "--dist"])
            .arg(out)
            .current_dir(root())
            .env("TRUNK_SKIP_VERSION_CHECK", "true"),
    )?;
    build_web(out)
}

fn ensure_browser() -> Result {
    if have("chromium") && have("chromedriver") {
        return Ok(());
    }
    apt_install(&["chromium", "chromium-driver"])
}

/// Debian's ACME test server and its DNS (the ACME test), and nginx (the
/// reverse-proxy test).
fn ensure_pebble() -> Result {
    if !(have("pebble") && have("pebble-challtestsrv")) {
        apt_install(&["pebble"])?;
    }
    if !have("nginx") {
        apt_install(&["nginx-light"])?;
    }
    Ok(())
}

fn ensure_lavapipe() -> Result {
    if output_of("dpkg", &["-s", "mesa-vulkan-drivers"]).is_some() {
        return Ok(());
    }
    apt_install(&["mesa-vulkan-drivers"])
}

fn setup(args: &[String]) -> Result {
    let all = args.iter().any(|a| a == "--all");
    for a in args {
        if !matches!(a.as_str(), "--browser" | "--gpu" | "--trunk" | "--all") {
            return Err(format!("setup: unknown option {a}"));
        }
    }
    ensure_wasm_target()?;
    ensure_wasm_bindgen()?;
    ensure_node()?;
    if all || args.iter().any(|a| a == "--browser") {
        ensure_browser()?;
    }
    if all || args.iter().any(|a| a == "--gpu") {
        ensure_lavapipe()?;
    }
    if all || args.iter().any(|a| a == "--trunk") {
        ensure_trunk()?;
    }
    println!("setup: all requested tools are present");
    Ok(())
}

// ---------------------------------------------------------------- commands

fn up(args: &[String]) -> Result {
    ensure_wasm_target()?;
    ensure_wasm_bindgen()?;
    // What `shoal up` serves, built into the binary: the dashboard and the browser worker.
    let site = build_site_synced()?;
    let mut c = cargo();
    c.args(["run", "--quiet", "--release", "--locked", "-p", "shoal-native", "--bin", "shoal", "--", "up"]);
    c.args(args).env("SHOAL_EMBED_SITE", &site);
    step("shoal up", &mut c)
}

/// One `shoal` file to copy to a server: release, the site embedded.
fn build() -> Result {
    ensure_wasm_target()?;
    ensure_wasm_bindgen()?;
    let site = build_site_synced()?;
    step(
        "shoal (release, the dashboard and the worker page embedded)",
        cargo()
            .args(["build", "--release", "--locked", "-p", "shoal-native", "--bin", "shoal"])
            .env("SHOAL_EMBED_SITE", &site),
    )?;
    let bin = target_dir().join("release").join(if cfg!(windows) { "shoal.exe" } else { "shoal" });
    let size = std::fs::metadata(&bin).map_err(|e| format!("{}: {e}", bin.display()))?.len();
    println!("{} ({:.1} MiB): serves its dashboard from any folder", bin.display(), size as f64 / (1 << 20) as f64);
    Ok(())
}

/// The built site (dashboard + worker page) that `up`, `build` and `test`
/// embed and serve.
fn site_dir() -> PathBuf {
    target_dir().join("shoal-web-dist")
}

/// Builds the site from scratch, then brings [`site_dir`] to exactly its
/// files, rewriting only those whose bytes changed: no file of an older
/// build is left, and an unchanged site does not make cargo rebuild the
/// binary that embeds it.
fn build_site_synced() -> Result<PathBuf> {
    let (out, scratch) = (site_dir(), target_dir().join("shoal-web-dist.new"));
    let _ = std::fs::remove_dir_all(&scratch);
    build_site(&scratch)?;
    sync_dir(&scratch, &out)?;
    let _ = std::fs::remove_dir_all(&scratch);
    build_embed_npm(&target_dir().join("shoal-embed-npm"))?;
    Ok(out)
}

/// The embed kit as an npm package folder (`npm publish` it, or `npm
/// install` the folder): `createShoal(options)` with its types. The
/// package holds only the page side; the worker's wasm is always loaded
/// from the coordinator named in the options.
fn build_embed_npm(out: &Path) -> Result {
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(out).map_err(|e| err(out, e))?;
    let www = root().join("www");
    let read = |name: &str| std::fs::read_to_string(www.join(name)).map_err(|e| err(&www.join(name), e));
    let version = env!("CARGO_PKG_VERSION");
    let files = [
        (
            "package.json",
            format!(
                "{{\n  \"name\": \"shoal-embed\",\n  \"version\": \"{version}\",\n  \"description\": \"Let your site's visitors lend their GPU to a Shoal compute swarm, with credit to your payout address\",\n  \"type\": \"module\",\n  \"main\": \"index.mjs\",\n  \"module\": \"index.mjs\",\n  \"types\": \"index.d.ts\",\n  \"exports\": {{ \".\": {{ \"types\": \"./index.d.ts\", \"default\": \"./index.mjs\" }} }},\n  \"files\": [\"index.mjs\", \"index.d.ts\", \"README.md\"],\n  \"sideEffects\": false,\n  \"license\": \"Apache-2.0\"\n}}\n"
            ),
        ),
        (
            "index.mjs",
            format!(
                "{}\nexport const createShoal = globalThis.ShoalEmbed.create;\nexport default createShoal;\n",
                read("embed.js")?
            ),
        ),
        ("index.d.ts", read("shoal-embed.d.ts")?),
        ("README.md", EMBED_NPM_README.replace("{version}", version)),
    ];
    for (name, text) in files {
        std::fs::write(out.join(name), text).map_err(|e| err(&out.join(name), e))?;
    }
    Ok(())
}

/// The npm package's README.
const EMBED_NPM_README: &str = "# shoal-embed {version}

Let your site's visitors lend their spare GPU (WebGPU; the CPU without one)
to a [Shoal](https://github.com/shoal-compute/shoal) compute swarm, credited to your payout
address. Nothing runs before the visitor agrees; the worker pauses while the
page is hidden or the battery is low, and never uses more than its GPU share.

```js
import { createShoal } from 'shoal-embed';

const shoal = createShoal({
  coordinator: 'wss://shoal.example/ws', // the swarm's worker endpoint
  payout: 'YOUR-ADDRESS',                 // credited for your visitors' work
  gpuShare: 30,                           // percent of the GPU's time, 10-100
});
shoal.addEventListener('status', e => console.log(e.detail.phase, e.detail.completed));
```

Without a bundler, one tag does the same:

```html
<script src=\"https://shoal.example/embed.js\" data-payout=\"YOUR-ADDRESS\" data-gpu-share=\"30\" async></script>
```

The coordinator's operator must list your site in `server.embed_origins`
(its own pages need no entry) and take contributor identities
(`coordinator.identities = \"open\"`). A site with a Content Security Policy
must allow `worker-src blob:` and `connect-src`/`script-src` of the
coordinator. API: `consent(yes)`, `start()`, `stop()`, `pause()`,
`resume()`, `setGpuShare(percent)`, `status`, events `status`, `consent`,
`error`; types in `index.d.ts`.
";

/// Makes `to` hold exactly the files of `from`, writing only what differs.
fn sync_dir(from: &Path, to: &Path) -> Result {
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(to).map_err(|e| err(to, e))?;
    for entry in std::fs::read_dir(to).map_err(|e| err(to, e))? {
        let path = entry.map_err(|e| err(to, e))?.path();
        let Some(name) = path.file_name() else { continue };
        if !from.join(name).exists() {
            let gone = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            gone.map_err(|e| err(&path, e))?;
        }
    }
    for entry in std::fs::read_dir(from).map_err(|e| err(from, e))? {
        let path = entry.map_err(|e| err(from, e))?.path();
        let Some(name) = path.file_name() else { continue };
        let target = to.join(name);
        if path.is_dir() {
            sync_dir(&path, &target)?;
        } else if std::fs::read(&path).map_err(|e| err(&path, e))? != std::fs::read(&target).unwrap_or_default() {
            std::fs::copy(&path, &target).map_err(|e| err(&target, e))?;
        }
    }
    Ok(())
}

fn test() -> Result {
    let t = Instant::now();
    ensure_wasm_target()?;
    ensure_wasm_bindgen()?;
    ensure_node()?;
    // shoal-compute's tests run every kernel on a real Vulkan driver (Mesa's
    // lavapipe) and on WebGPU in headless Chromium (SwiftShader).
    ensure_lavapipe()?;
    ensure_browser()?;
    ensure_pebble()?;
    step("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    // `bench --peers` runs it only with Ray and Dask installed: at least it parses.
    step(
        "the peers' benchmark script compiles",
        Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])"])
            .arg(root().join("xtask").join("peers").join("peers.py")),
    )?;
    api::check_proto()?;
    api::check_alert_rules()?;
    // The site first: the `shoal` the tests run carries it (SHOAL_EMBED_SITE),
    // and every native cargo step sees the same value (a change reruns
    // shoal-native's build script and rebuilds what depends on it).
    let web_dist = build_site_synced()?;
    step(
        "clippy (native, all targets)",
        cargo()
            .args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])
            .env("SHOAL_EMBED_SITE", &web_dist),
    )?;
    for (package, targets, what) in [
        ("shoal-compute", &["--lib"][..], "WebGPU backend"),
        ("shoal-web", &["--lib", "--tests"][..], "the browser worker"),
        ("shoal-ui", &["--bins"][..], "the dashboard"),
        ("shoal-core", &["--lib", "--tests"][..], "the core"),
    ] {
        step(
            &format!("clippy ({package} on wasm32, {what})"),
            cargo()
                .args(["clippy", "-p", package, "--target", WASM_TARGET, "--locked"])
                .args(targets)
                .args(["--", "-D", "warnings"]),
        )?;
    }
    let python = ensure_python_grpc()?;
    let node_modules = ensure_playwright()?;
    // The npm package imports and exports its function (outside a page it
    // only defines it).
    let npm = target_dir().join("shoal-embed-npm").join("index.mjs");
    step(
        "the embed kit's npm package imports",
        Command::new("node").args([
            "--input-type=module",
            "-e",
            &format!(
                "const m = await import({:?}); if (typeof m.createShoal !== 'function' || m.default !== m.createShoal) {{ console.error('no createShoal export'); process.exit(1); }}",
                format!("file://{}", npm.display())
            ),
        ]),
    )?;
    step(
        "native tests (browser workers and the dashboard in headless Chromium included)",
        cargo()
            .args(["test", "--workspace", "--locked"])
            .env("SHOAL_PYTHON", &python)
            .env("SHOAL_WEB_DIST", &web_dist)
            .env("SHOAL_EMBED_SITE", &web_dist)
            .env("SHOAL_NODE_PATH", &node_modules)
            .env("TMPDIR", browser_tmp()),
    )?;
    step(
        "shoal-core builds for wasm32 (release)",
        cargo().args(["build", "-p", "shoal-core", "--target", WASM_TARGET, "--release", "--locked"]),
    )?;
    step(
        "shoal-core tests on wasm32 (wasm-bindgen-test, Node)",
        cargo()
            .args(["test", "-p", "shoal-core", "--target", WASM_TARGET, "--locked"])
            .env("WASM_BINDGEN_TEST_TIMEOUT", "60"),
    )?;
    step(
        "shoal-compute tests in headless Chromium (WebGPU, dedicated worker)",
        cargo()
            .args(["test", "-p", "shoal-compute", "--target", WASM_TARGET, "--test", "web", "--locked"])
            .env("CHROMEDRIVER", "/usr/bin/chromedriver")
            .env("WASM_BINDGEN_TEST_TIMEOUT", "90")
            .env("TMPDIR", browser_tmp()),
    )?;
    step(
        "shoal-web tests in headless Chromium (executor in a dedicated worker)",
        cargo()
            .args(["test", "-p", "shoal-web", "--target", WASM_TARGET, "--test", "web", "--locked"])
            .env("CHROMEDRIVER", "/usr/bin/chromedriver")
            .env("WASM_BINDGEN_TEST_TIMEOUT", "90")
            .env("TMPDIR", browser_tmp()),
    )?;
    let _ = std::fs::remove_dir_all(target_dir().join("browser-tmp"));
    ensure_windows_target()?;
    step(
        "shoal-native checks for Windows (x86_64-pc-windows-gnu)",
        cargo().args(["check", "-p", "shoal-native", "--target", WINDOWS_TARGET, "--locked"]),
    )?;
    step("benchmarks compile", cargo().args(["bench", "-p", "shoal-core", "--no-run", "--locked"]))?;
    println!("\nall checks passed in {:.0?}", t.elapsed());
    Ok(())
}

fn fuzz(args: &[String]) -> Result {
    let runs = match args {
        [] => 1_000_000u64,
        [flag, n] if flag == "--runs" => n.parse().map_err(|e| format!("--runs {n}: {e}"))?,
        _ => return Err("usage: cargo xtask fuzz [--runs N]".into()),
    };
    if output_of("cargo", &["+nightly", "--version"]).is_none() {
        return Err("fuzzing needs the nightly toolchain: rustup toolchain install nightly".into());
    }
    if !have("cargo-fuzz") {
        step("install cargo-fuzz", Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz_dir = root().join("fuzz");
    // Without AddressSanitizer: every crate of the project forbids unsafe
    // code, the one build serves all four targets (the gRPC one links the
    // whole service), and an uninstrumented run is several times faster.
    for target in ["frame_decoder", "message_decoder", "pilot_decoder", "grpc_requests"] {
        step(
            &format!("fuzz {target} ({runs} runs)"),
            Command::new("cargo").current_dir(&fuzz_dir).env_remove("RUSTUP_TOOLCHAIN").args([
                "+nightly",
                "fuzz",
                "run",
                "--sanitizer",
                "none",
                target,
                "--",
                &format!("-runs={runs}"),
                "-print_final_stats=1",
            ]),
        )?;
    }
    Ok(())
}
