//! Local scaffold to build and run the soak module (not the real harness).

mod soak;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("soak") => soak::run(&args[1..]),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: netpoll-bench soak [--secs N] [--conns C]",
        )),
    };
    if let Err(e) = res {
        eprintln!("netpoll-bench: {e}");
        std::process::exit(1);
    }
}
