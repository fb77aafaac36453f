fn main() {
    let a: Vec<String> = std::env::args().collect();
    let p = cowcheck::program::trace::parse(&std::fs::read(&a[1]).unwrap()).unwrap();
    print!("{}", cowcheck::repro_c::generate(&p, 4096, &a[1]).unwrap());
}
