//! Parse the command line, run the command, exit with its code.

// mimalloc: the request path allocates many small, short-lived objects
// (headers, futures); glibc malloc showed up as ~15% of proxy CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = sessiongate::cli::main();
    sessiongate::logging::flush();
    std::process::exit(code);
}
