//! Parse the command line, run the command, exit with its code.

fn main() {
    let code = sessiongate::cli::main();
    sessiongate::logging::flush();
    std::process::exit(code);
}
