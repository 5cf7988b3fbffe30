//! `pusher-bench`: placeholder until the benchmark lands (issue #6).

fn main() {
    eprintln!("pusher-bench: not built yet");
    std::process::exit(2);
}
