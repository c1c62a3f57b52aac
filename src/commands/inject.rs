//! `inject`: reads NCP's manifests from a file or standard input, prints them with our
//! containers on standard output. It touches no host and needs no configuration, so it runs
//! apart from the report of the commands that change a node: standard output is only YAML,
//! fit for `kubectl apply -f -`.

use std::io::{Read, Write};
use std::path::Path;

/// Exit 0 with the manifests printed; 2 on input inject does not accept (named on stderr).
pub fn run(image: &str, file: Option<&Path>) -> i32 {
    match inject(image, file) {
        Ok(text) => match std::io::stdout().write_all(text.as_bytes()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: writing the manifests to standard output: {e}");
                3
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn inject(image: &str, file: Option<&Path>) -> Result<String, String> {
    let (name, text) = match file.filter(|f| *f != Path::new("-")) {
        Some(f) => (
            f.display().to_string(),
            std::fs::read_to_string(f).map_err(|e| format!("reading {}: {e}", f.display()))?,
        ),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("reading standard input: {e}"))?;
            ("standard input".to_string(), s)
        }
    };
    crate::inject::inject(&text, image, &name).map_err(|e| e.to_string())
}
