#![no_main]
// The body is shared::fuzzing::avro_confluent, which the stable test suite also runs on
// every corpus entry and every crash input found (fuzz/regressions/).
libfuzzer_sys::fuzz_target!(|data: &[u8]| shared::fuzzing::avro_confluent(data));
