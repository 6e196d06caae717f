# Sourced by the bench scripts after `cd` to the repository root: builds the release binary and
# sets LPFT (the binary), MODEL (MiniLM's folder, `lpft fetch-model minilm`), data (CB exported
# as lpft finds it: --data-dir, $LPFT_DATA_DIR, ./data, $LPFT_HOME/data, embedded) and tmp (a
# results file); both temporaries are removed when the script exits.
cargo build --release --quiet
LPFT=./target/release/lpft
MODEL=$($LPFT fetch-model minilm)
data=$(mktemp -d)
tmp=$(mktemp)
trap 'rm -rf "$tmp" "$data"' EXIT
$LPFT data --task cb --export "$data" >/dev/null
