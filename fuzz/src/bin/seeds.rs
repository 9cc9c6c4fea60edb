//! `seeds DIR`: writes the generated seeds ([`rampart_fuzz::generated_seeds`]) into
//! DIR/<target>/, next to the committed ones `scripts/fuzz.sh` copies there.

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: seeds DIR");
        std::process::exit(2);
    };
    for (target, name, bytes) in rampart_fuzz::generated_seeds() {
        let dir = std::path::Path::new(&dir).join(target);
        let path = dir.join(format!("gen-{name}"));
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, bytes)) {
            eprintln!("seeds: {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}
