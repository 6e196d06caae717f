//! Records the git commit lpft is built from (for run manifests), when built from a checkout.
fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    if let Ok(out) = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
    {
        if out.status.success() {
            let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
            println!("cargo:rustc-env=LPFT_GIT_COMMIT={sha}");
        }
    }
}
