//! Parse the command line, run the command, exit with its code.

fn main() {
    std::process::exit(sessiongate::cli::main());
}
