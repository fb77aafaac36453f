//! The trace parser on any bytes: it never panics, and whatever it accepts round-trips through
//! the printer (`parse(print(p)) == p`, and printing again prints the same text).
#![no_main]

use cowcheck::program::trace;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(program) = trace::parse(data) else {
        return;
    };
    if let Err((i, e)) = program.validate() {
        panic!(
            "the parser accepted an invalid program (op {}: {})",
            i + 1,
            e.message
        );
    }
    let printed = program.to_string();
    let again = match trace::parse(printed.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!(
            "the printed form of an accepted trace does not parse: {e}\n--- input ---\n{}\n--- printed ---\n{printed}",
            String::from_utf8_lossy(data)
        ),
    };
    assert_eq!(
        again.to_string(),
        printed,
        "printing the reparsed program gives other text"
    );
    assert_eq!(
        again, program,
        "the printed form reads back as another program\n--- printed ---\n{printed}"
    );
});
