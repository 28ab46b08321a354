//! Gives the binaries an rpath to the venv's `torch/lib`, so they run without LD_LIBRARY_PATH.
//! tch's build script finds libtorch through `LIBTORCH_USE_PYTORCH` (set in .cargo/config.toml);
//! we ask the same Python where torch lives.

fn main() {
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let lib = String::from_utf8_lossy(&o.stdout).trim().to_string();
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        }
        _ => println!("cargo:warning=could not ask {python} where torch/lib is; run `make setup` first"),
    }
}
