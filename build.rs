//! Hands the linker the order in which to place sessiongate's functions:
//! the ones a running sidecar executes first, side by side
//! (`link/symbol-order.txt`, made by `bench/symbol_order.py`). The kernel
//! maps an executable's code in 64 KiB windows around each page touched, so
//! start-up code spread over the whole text section kept ~8 MiB of it in an
//! idle sidecar's RSS; side by side it is about 3 MiB, and the request path
//! sits in contiguous pages (BENCHMARKS.md, session 10).
//!
//! Only where lld links by default (Rust >= 1.90 on x86_64-unknown-linux-gnu;
//! mold understands the flag too) and no other linker is configured: GNU ld
//! refuses the flag. `SESSIONGATE_SYMBOL_ORDER=off` turns it off. Names the
//! binary no longer has are skipped by the linker, so a stale list costs
//! memory, never a failed or wrong build.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=link/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=SESSIONGATE_SYMBOL_ORDER");
    for var in [
        "RUSTC_LINKER",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let Some(manifest) = env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = PathBuf::from(manifest).join("link/symbol-order.txt");
    let off = env::var("SESSIONGATE_SYMBOL_ORDER").is_ok_and(|v| v == "off");
    let default_lld = env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    // A linker chosen by hand may be GNU ld, which would fail on the flag.
    let other_linker = env::var_os("RUSTC_LINKER").is_some()
        || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || env::var("CARGO_ENCODED_RUSTFLAGS")
            .is_ok_and(|f| f.contains("linker") || f.contains("fuse-ld"));
    let Some(path) = order.to_str() else {
        return;
    };
    if off || !default_lld || other_linker || !order.is_file() || path.contains(',') {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={path}");
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
