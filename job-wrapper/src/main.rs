//! Placeholder: the job wrapper is built by its own issue.

fn main() {
    eprintln!("job-wrapper: not implemented yet");
    std::process::exit(2);
}
