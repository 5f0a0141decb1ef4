// Records the target triple cargo-flake is built for: on a host that runs its
// own tests, that is the triple the tests ran on unless `--target` says otherwise.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=FLAKE_BUILD_TARGET={target}");
}
