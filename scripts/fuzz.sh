#!/bin/bash
# Coverage-guided fuzzing of everything Rampart reads from outside (the checks are in
# fuzz/src/lib.rs): replays the seeds and past failures as tests, builds the targets with
# SanitizerCoverage on the stable toolchain (no nightly, no sanitizer runtime: safe Rust
# turns an out-of-bounds read into a panic, overflow checks are on), then runs libFuzzer on
# each target for FUZZ_SECONDS (default 21: nine targets share about the time six had at
# 30), from the committed seeds (fuzz/corpus/) and the generated ones (fuzz/src/bin/seeds.rs).
#   scripts/fuzz.sh [TARGET...]            all targets, or those named
#   FUZZ_SECONDS=600 scripts/fuzz.sh firewall
#   FUZZ_TARGET_DIR=/tmp/fuzz scripts/fuzz.sh  builds (and keeps its corpus) there, not in target/fuzz
# By default the corpus grown so far (target/fuzz/work/) is reused and libFuzzer picks a
# random seed. The test tier (tests/run.sh) sets FUZZ_SEED=1 and FUZZ_FRESH=1: the same
# seed, from the committed and generated seeds only, so a commit's run explores the same
# inputs each time. A failure prints the input in hex and where libFuzzer saved it: put
# that file in fuzz/regressions/<target>/ with the fix, and the replay keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/../target/fuzz}
work=$CARGO_TARGET_DIR/work
seconds=${FUZZ_SECONDS:-21}
targets=("$@")
((${#targets[@]})) || targets=(parse firewall config image event event_log admin rules inspect)
triple=$(rustc -vV | sed -n 's/^host: //p')
seed_flag=()
[[ -n ${FUZZ_SEED:-} ]] && seed_flag=(-seed="$FUZZ_SEED")
[[ -n ${FUZZ_FRESH:-} ]] && rm -rf "$work/corpus"

# The fuzz workspace builds the project's crates with the versions the main workspace
# locks (cargo adds only what fuzzing needs on top).
cp ../Cargo.lock Cargo.lock

echo "fuzz: replaying the seeds and past failures"
out=$(cargo test 2>&1) || { echo "$out"; exit 1; }
grep -E '^test .* ok$' <<<"$out" | sed 's/^/  /'
rm -rf "$work/seeds"
cargo run --quiet --bin seeds -- "$work/seeds"

# RUSTFLAGS reach only the --target build, not build scripts and proc macros (which could
# not link the coverage callbacks libFuzzer provides).
echo "fuzz: building the targets with coverage instrumentation"
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
	cargo build --quiet --release --target "$triple" "${targets[@]/#/--bin=}"

failed=()
for t in "${targets[@]}"; do
	bin=$CARGO_TARGET_DIR/$triple/release/$t
	[[ -x $bin ]] || { echo "fuzz: no target $t (fuzz/fuzz_targets/)"; exit 2; }
	corpus=$work/corpus/$t artifacts=$work/artifacts/$t
	mkdir -p "$corpus" "$artifacts"
	for dir in corpus/$t "$work/seeds/$t"; do
		[[ -d $dir ]] && cp -f "$dir"/* "$corpus"/
	done
	log=$work/$t.log
	if "$bin" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 "${seed_flag[@]}" \
		-artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		echo "fuzz $t: no failure in ${runs:-?} runs (${seconds} s), corpus $(ls "$corpus" | wc -l) inputs, coverage $(grep -o 'cov: [0-9]*' "$log" | tail -1)"
	else
		failed+=("$t")
		echo "fuzz $t: FAILED (log: $log)"
		if grep -q -E '^(==[0-9]+== ERROR|thread .* panicked|panicked at)' "$log"; then
			grep -E -A25 '^(==[0-9]+== ERROR|thread .* panicked|panicked at)' "$log" | head -40 || true
		else
			tail -40 "$log"
		fi
		for input in $(grep -o "Test unit written to [^ ]*" "$log" | awk '{print $5}'); do
			echo "input $input:"
			od -A x -t x1z -v "$input" | head -40
		done
	fi
done
((${#failed[@]} == 0)) || { echo "fuzz: failed: ${failed[*]}"; exit 1; }
